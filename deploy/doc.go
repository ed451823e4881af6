// Package deploy holds how Isthmus is installed on Kubernetes: the Helm
// chart in isthmus/ (isthmusd DaemonSet, route reflectors, controller,
// RBAC, CRDs) and its tests, which render the chart with the Helm CLI
// built by tools/helm and check the result against the real binaries and
// a real API server. The package has no Go code of its own.
package deploy
