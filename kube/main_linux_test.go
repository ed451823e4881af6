package kube_test

import (
	"os"
	"testing"

	"github.com/isthmus-net/isthmus/kube/kubetest"
)

func TestMain(m *testing.M) {
	// Each test's etcd and kube-apiserver start while the test before it
	// runs (about 3 s a test).
	kubetest.StartAhead()
	code := m.Run()
	kubetest.StopAhead()
	kubetest.RemoveBuilds()
	os.Exit(code)
}
