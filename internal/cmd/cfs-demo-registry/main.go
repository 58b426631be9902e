// Command cfs-demo-registry serves two releases of a generated bootable
// image on a loopback registry for the README demo (scripts/demo):
// os:1.0, os:2.0 and os:stable (= 1.0). It is not an admin tool.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	blobs := flag.String("blobs", "", "directory for blobs (default: memory)")
	scale := flag.Int("scale", 1, "image size: 1 is ~10 MiB; 300 is the 1 GiB benchmark image")
	flag.Parse()
	reg, err := testregistry.Serve(*addr, *blobs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cfs-demo-registry:", err)
		os.Exit(1)
	}
	defer reg.Close()
	for _, push := range []struct{ version, tag string }{{"1.0", "1.0"}, {"2.0", "2.0"}, {"1.0", "stable"}} {
		img, err := testimage.Generate(testimage.Options{Seed: 42, Scale: *scale, Name: "cfs-demo", Version: push.version, UTF8Names: true})
		if err == nil {
			_, err = reg.PushImage("os", push.tag, img)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cfs-demo-registry:", err)
			os.Exit(1)
		}
	}
	fmt.Println(reg.Host)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
