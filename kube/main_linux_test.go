package kube_test

import (
	"os"
	"testing"

	"github.com/isthmus-net/isthmus/kube/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.RemoveBuilds()
	os.Exit(code)
}
