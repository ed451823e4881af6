// Package api is the local API between the isthmus-cni plugin and isthmusd:
// the request and response types, the gRPC service description, a JSON codec
// for it, a client for the plugin and the error vocabulary both sides share.
//
// The service is served on a unix socket that only root can open. It is a
// private API between two binaries of one release, so its messages are plain
// Go structs carried as JSON instead of protocol buffers.
package api
