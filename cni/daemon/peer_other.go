//go:build !linux

package daemon

import "net"

// checkPeer relies on the socket's file mode where SO_PEERCRED is missing.
func checkPeer(net.Conn) error { return nil }
