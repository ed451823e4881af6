package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
)

// identity is what the identity listeners answer: "namespace/name" (from
// $POD_NAMESPACE and the pod's name), or the name alone.
func identity() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns + "/" + podName()
	}
	return podName()
}

// parsePorts reads a comma-separated list of ports ("" is none).
func parsePorts(s string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("parse port %q: want 1-65535", f)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// serveIdentity answers on every port, over TCP and UDP, with id: a TCP
// connection gets id and is closed, a UDP datagram gets id back. It
// returns once every listener is open; they close when ctx ends, and a
// listener that fails is reported on errc.
func serveIdentity(ctx context.Context, ports []int, id string, errc chan<- error) error {
	for _, port := range ports {
		addr := ":" + strconv.Itoa(port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", addr, err)
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen udp %s: %w", addr, err)
		}
		go func() {
			<-ctx.Done()
			ln.Close()
			pc.Close()
		}()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("accept on tcp %s: %w", addr, err)
					}
					return
				}
				if _, err := c.Write([]byte(id)); err != nil {
					log.Printf("answer %s on tcp %s: %v", c.RemoteAddr(), addr, err)
				}
				c.Close()
			}
		}()
		go func() {
			buf := make([]byte, 512)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
						errc <- fmt.Errorf("read udp %s: %w", addr, err)
					}
					return
				}
				if _, err := pc.WriteTo([]byte(id), from); err != nil {
					log.Printf("answer %s on udp %s: %v", from, addr, err)
				}
			}
		}()
	}
	return nil
}
