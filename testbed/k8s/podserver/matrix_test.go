package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestMatrix: a line of probes gets a line of results in order: the
// identity listeners' answer over TCP and UDP, "-" from a UDP port that
// never answers, "!refused" from a closed TCP port.
func TestMatrix(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 2)
	if err := serveIdentity(ctx, []int{port}, "x/a", errc); err != nil {
		t.Fatal(err)
	}
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	in := fmt.Sprintf("tcp:127.0.0.1:%d udp:127.0.0.1:%d udp:%s tcp:%s\n", port, port, silent.LocalAddr(), closedAddr)
	var out strings.Builder
	if err := matrix([]string{"-timeout", "300ms"}, strings.NewReader(in+in), &out); err != nil {
		t.Fatal(err)
	}
	want := "x/a x/a - !refused\n"
	if out.String() != want+want {
		t.Errorf("results %q, want %q twice", out.String(), want)
	}
	select {
	case err := <-errc:
		t.Errorf("identity listener: %v", err)
	default:
	}
}

func TestParsePorts(t *testing.T) {
	if got, err := parsePorts("80, 81"); err != nil || len(got) != 2 || got[0] != 80 || got[1] != 81 {
		t.Errorf("parsePorts(80, 81) = %v, %v", got, err)
	}
	if _, err := parsePorts("80,http"); err == nil || !strings.Contains(err.Error(), `"http"`) {
		t.Errorf("parsePorts(80,http) error %v, want one naming http", err)
	}
}
