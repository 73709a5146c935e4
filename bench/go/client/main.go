// The Go bench client: sequential unary calls of /bench.v1.BenchService/Unary through the Go binding,
// speaking the stdio protocol of bench/hosts.py (see unary_bench.c --stdio):
//
//	client URL    BENCH_WARMUP calls, print "warm", wait for a line on stdin, BENCH_N timed calls,
//	              print "result median_us=X p99_us=Y client_cpu_us=A client_ctxsw=C"
//	client plugin:PATH   the same through a plugin host: StartPlugin(PATH) (bench_server plugin),
//	              Dispense("bench"); "warm pid=P launch_us=L" (launch to the first call's answer)
//
// BENCH_PROTOCOL (connect, grpc) picks the plain client's protocol.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func usage() (cpuNs, ctxsw int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano(), ru.Nvcsw + ru.Nivcsw
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: client URL")
		os.Exit(2)
	}
	n, warmup := envInt("BENCH_N", 20000), envInt("BENCH_WARMUP", 2000)
	req := make([]byte, 64)
	req[0], req[1] = 0x0a, 62
	for i := 2; i < len(req); i++ {
		req[i] = 'q'
	}
	ctx := context.Background()
	var client *connectplugin.Client
	var err error
	warm := "warm"
	if path := strings.TrimPrefix(os.Args[1], "plugin:"); path != os.Args[1] {
		t0 := time.Now()
		p, err := connectplugin.StartPlugin(connectplugin.PluginClientConfig{
			CookieKey: "BENCH_PLUGIN", CookieValue: "connectplugin-bench",
			Plugins: map[int][]string{1: {"bench"}}, Command: connectplugin.PluginCommand{Path: path},
		})
		if err == nil {
			defer p.Kill()
			client, err = p.Dispense("bench")
		}
		if err == nil {
			_, err = client.CallUnary(ctx, "/bench.v1.BenchService/Unary", req)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "go client: plugin:", err)
			os.Exit(1)
		}
		warm = fmt.Sprintf("warm pid=%d launch_us=%.1f", p.Pid(), float64(time.Since(t0).Nanoseconds())/1000)
	} else {
		opts := []connectplugin.ClientOption{connectplugin.WithHTTPVersion("2")}
		if proto := os.Getenv("BENCH_PROTOCOL"); proto != "" {
			opts = append(opts, connectplugin.WithProtocol(proto))
		}
		client, err = connectplugin.NewClient(os.Args[1], opts...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go client:", err)
		os.Exit(1)
	}
	defer client.Close()
	call := func() {
		resp, err := client.CallUnary(ctx, "/bench.v1.BenchService/Unary", req)
		if err != nil || len(resp.Message) != 64 {
			fmt.Fprintln(os.Stderr, "go client: call failed:", err)
			os.Exit(1)
		}
	}
	for i := 0; i < warmup; i++ {
		call()
	}
	fmt.Println(warm)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	samples := make([]time.Duration, n)
	cpu0, cs0 := usage()
	for i := range samples {
		t0 := time.Now()
		call()
		samples[i] = time.Since(t0)
	}
	cpu1, cs1 := usage()
	sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
	p99 := int(float64(n)*0.99+0.5) - 1
	if p99 < 0 {
		p99 = 0
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	fmt.Printf("result median_us=%.2f p99_us=%.2f client_cpu_us=%.2f client_ctxsw=%.3f\n",
		us(samples[n/2]), us(samples[p99]), float64(cpu1-cpu0)/1000/float64(n), float64(cs1-cs0)/float64(n))
}
