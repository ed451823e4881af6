package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Controller is the Isthmus controller: informers on the cluster, and,
// while it leads, one worker per node pushing that node's intent.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	kc   kubernetes.Interface
	dyn  dynamic.Interface
	sets countingSets

	mu      sync.Mutex // guards leading
	leading bool
}

// New returns a controller talking to the API server described by rc.
func New(rc *rest.Config, cfg Config) (*Controller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	rc.UserAgent = "isthmus-controller"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	return &Controller{cfg: cfg, log: cfg.Logger, kc: kc, dyn: dyn}, nil
}

// Leading reports whether this replica holds the Lease now.
func (c *Controller) Leading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// SetCount is how many gNMI Set RPCs this replica has sent.
func (c *Controller) SetCount() int64 { return c.sets.get() }

func (c *Controller) setLeading(v bool) {
	c.mu.Lock()
	c.leading = v
	c.mu.Unlock()
}

// Run starts the informers and, once this replica leads (at once without
// leader election), configures the nodes until ctx is done or leadership
// is lost; losing it returns an error, so the process restarts as a
// follower with nothing left running.
func (c *Controller) Run(ctx context.Context) error {
	w, err := c.startWatch(ctx)
	if err != nil {
		return err
	}
	if !c.cfg.LeaderElect {
		c.setLeading(true)
		defer c.setLeading(false)
		return newLeader(c, w).run(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaName(c.cfg.LeaseNamespace, c.cfg.LeaseName),
		Client:     c.kc.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.Identity},
	}
	var runErr error
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.cfg.LeaseDuration,
		RenewDeadline:   c.cfg.RenewDeadline,
		RetryPeriod:     c.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            c.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				c.log.Info("leading", "identity", c.cfg.Identity)
				c.setLeading(true)
				runErr = newLeader(c, w).run(lctx)
				c.setLeading(false)
			},
			OnStoppedLeading: func() {
				c.setLeading(false)
				close(lost)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("set up leader election: %w", err)
	}
	le.Run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-lost:
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return runErr
		}
		return errors.New("lost the leader lease")
	case <-time.After(0):
		return errors.New("leader election ended")
	}
}

// GVR of VirtualNetworks, for the dynamic client.
var vnGVR = schema.GroupVersionResource{Group: "isthmus.dev", Version: "v1alpha1", Resource: "virtualnetworks"}
