package plugin

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// legacyGSOMaxSize is the kernel's IPv4 GSO and GRO maximum size unless
// raised (BIG TCP raises it, Linux 6.3 and later).
const legacyGSOMaxSize = 65536

// underlayGSO returns the IPv4 GSO maximum size both ends of a pod veth
// get: the underlay's when it is above 64 KiB, else 0 (the kernel's
// default stays). A pod's TCP builds GSO packets up to its interface's
// size; each costs the stacks and the forwarder once whatever its length,
// so larger packets carry the same bytes for less CPU. The encapsulated
// packet leaves through the underlay, which sends it whole only below its
// own size (raised only up to what the device can segment, its
// tso_max_size) and has the kernel segment it in software otherwise; so
// pods follow the underlay. TCP keeps its packets MAX_TCP_HEADER (over
// 300 bytes) below the size, more than the encapsulation adds. An
// underlay that is not a link of this namespace leaves pods at the
// default.
func underlayGSO(name string) (uint32, error) {
	if name == "" {
		return 0, nil
	}
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find underlay %s: %w", name, err)
	}
	if size := l.Attrs().GSOIPv4MaxSize; size > legacyGSOMaxSize {
		return size, nil
	}
	return 0, nil
}

// setIPv4GSO sets the IPv4 GSO and GRO maximum sizes of link, through h
// (nil: the calling thread's namespace), at most what the link can
// segment (its tso_max_size).
func setIPv4GSO(h *netlink.Handle, link netlink.Link, size uint32) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	if tso := link.Attrs().TSOMaxSize; tso > 0 {
		size = min(size, tso)
	}
	name := link.Attrs().Name
	if err := h.LinkSetGSOIPv4MaxSize(link, int(size)); err != nil {
		return fmt.Errorf("set gso_ipv4_max_size of %s to %d: %w", name, size, err)
	}
	if err := h.LinkSetGROIPv4MaxSize(link, int(size)); err != nil {
		return fmt.Errorf("set gro_ipv4_max_size of %s to %d: %w", name, size, err)
	}
	return nil
}
