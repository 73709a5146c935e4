package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
	"sort"
	"sync"
	"time"
)

// PluginCommand is how a host launches a plugin binary.
type PluginCommand struct {
	Path string
	Args []string
	Dir  string // working directory ("" = the host's)
	// Env holds variables that win over the host's environment and go-plugin's (go-plugin #162).
	Env map[string]string
	// SkipHostEnv gives the plugin none of the host's environment (go-plugin's SkipHostEnv).
	SkipHostEnv bool
}

// PluginClientConfig configures StartPlugin: the handshake's magic cookie, the plugins the host can
// dispense per app protocol version, the command, and the timeouts (0 = defaults: 60 s to start,
// 2 s of grace at each kill step).
type PluginClientConfig struct {
	CookieKey    string
	CookieValue  string
	Plugins      map[int][]string
	Command      PluginCommand
	StartTimeout time.Duration
	KillGrace    time.Duration
	// Logger receives each line of the plugin's stderr parsed as hclog (level, message, timestamp,
	// fields; plain lines by their [LEVEL] prefix, else at debug) and the host's own records about
	// the plugin, with the plugin's name (its binary's base name), on library threads (stderr lines
	// in order on one; others may run concurrently: lock what you share). nil: StdPluginLogger
	// (the standard logger). With Go 1.21+, SlogPluginLogger(l) sends
	// them to a *slog.Logger.
	Logger func(plugin string, r LogRecord)
	// AutoMTLS is go-plugin's ClientConfig.AutoMTLS (default false): an ephemeral host certificate
	// in PLUGIN_CLIENT_CERT, TLS to the plugin trusting only the certificate it prints.
	AutoMTLS bool
	// TLS is manual TLS (go-plugin's ClientConfig.TLSConfig) for a plugin serving TLS of its own;
	// when set, AutoMTLS is not offered. Set ServerName (a Unix socket has no host name).
	TLS *TLSConfig
	// URL, when set, is remote mode: the plugin already serves there ("http://host:port",
	// "https://host:port", "unix:///path", or "inproc://NAME" for Server.ServePluginInProcess) and
	// Command is not used. StartPlugin handshakes through connectplugin.v1.HandshakeService;
	// Kill only disconnects (the service keeps serving its other hosts) and Pid is 0.
	URL string
	// Reattach, when set, is the ReattachInfo of a plugin another host started (go-plugin's
	// ReattachConfig as JSON): StartPlugin connects to that running plugin; Command is not used.
	// Kill calls Shutdown, then signals the pid (SIGTERM, SIGKILL) until it is gone; Exited then
	// reports ok with status -1 (the status goes to the host that started it).
	Reattach string
	// SHA256 is SecureConfig: the binary's expected SHA-256 in hex (as sha256sum prints it); when
	// set, StartPlugin refuses a binary whose digest differs (CodePermissionDenied, both digests in
	// the message).
	SHA256 string
	// Restart relaunches a plugin that exited unexpectedly (zero value: never, go-plugin's way).
	Restart RestartPolicy
}

// RestartPolicy: at most MaxRestarts relaunches in the client's life, the first after
// InitialBackoff (0: 100 ms), doubling up to MaxBackoff (0: 5 s). Dispensed clients keep working
// across a restart; calls in flight when the plugin died fail with CodeUnavailable.
type RestartPolicy struct {
	MaxRestarts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

// PluginClient is a running plugin process this host launched (go-plugin's *plugin.Client).
type PluginClient struct {
	mu   sync.RWMutex
	_ptr *C.connectplugin_plugin_client
	// How it ended, kept when Kill frees the handle.
	endStatus          int
	endSignaled, ended bool
	exit               *pluginExit
}

// pluginExit is closed by the library's exit callback (an I/O thread).
type pluginExit struct {
	once sync.Once
	done chan struct{}
}

//export goPluginExit
func goPluginExit(kind, value C.int32_t, h C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	if e, ok := cgo.Handle(h).Value().(*pluginExit); ok && e != nil {
		e.once.Do(func() { close(e.done) })
	}
}

// StartPlugin launches the plugin binary with go-plugin's environment, waits for its handshake
// line and connects (go-plugin's NewClient + Client). It works with connectplugin plugins and with
// go-plugin gRPC plugins. The errors say what to change (binary missing or not executable, exited
// before the handshake with its stderr, no common version, ...). Kill it when done.
func StartPlugin(cfg PluginClientConfig) (*PluginClient, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	strs := []*C.char{}
	defer func() {
		for _, s := range strs {
			freeCString(s)
		}
	}()
	cs := func(what, s string) (*C.char, error) {
		p, err := cString(what, s)
		if err == nil {
			strs = append(strs, p)
		}
		return p, err
	}
	key, err := cs("cookie key", cfg.CookieKey)
	if err != nil {
		return nil, err
	}
	value, err := cs("cookie value", cfg.CookieValue)
	if err != nil {
		return nil, err
	}
	var config *C.connectplugin_plugin_client_config
	var cerr *C.connectplugin_error
	if cfg.Reattach != "" {
		r, err := cs("reattach information", cfg.Reattach)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_new_reattach(key, value, r, &config, &cerr), &cerr); err != nil {
			return nil, err
		}
	} else if cfg.URL != "" {
		u, err := cs("plugin URL", cfg.URL)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_new_url(key, value, u, &config, &cerr), &cerr); err != nil {
			return nil, err
		}
	} else {
		path, err := cs("plugin path", cfg.Command.Path)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_new(key, value, path, &config, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	defer C.connectplugin_plugin_client_config_free(config)
	for _, a := range cfg.Command.Args {
		ca, err := cs("argument", a)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_add_arg(config, ca, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	versions := make([]int, 0, len(cfg.Plugins))
	for v := range cfg.Plugins {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	for _, v := range versions {
		for _, n := range cfg.Plugins[v] {
			cn, err := cs("plugin name", n)
			if err != nil {
				return nil, err
			}
			if err := check(C.connectplugin_plugin_client_config_add_plugin(config, C.int32_t(v), cn, &cerr), &cerr); err != nil {
				return nil, err
			}
		}
	}
	keys := make([]string, 0, len(cfg.Command.Env))
	for k := range cfg.Command.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ck, err := cs("environment key", k)
		if err != nil {
			return nil, err
		}
		cv, err := cs("environment value", cfg.Command.Env[k])
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_set_env(config, ck, cv, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Command.SkipHostEnv {
		if err := check(C.connectplugin_plugin_client_config_set_inherit_env(config, 0, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Command.Dir != "" {
		cd, err := cs("working directory", cfg.Command.Dir)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_set_working_dir(config, cd, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.StartTimeout > 0 {
		if err := check(C.connectplugin_plugin_client_config_set_start_timeout_ms(config, C.int64_t(durationToMs(cfg.StartTimeout)), &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.KillGrace > 0 {
		if err := check(C.connectplugin_plugin_client_config_set_kill_grace_ms(config, C.int64_t(durationToMs(cfg.KillGrace)), &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if err := setHostLogger(config, cfg.Logger); err != nil {
		return nil, err
	}
	if cfg.AutoMTLS {
		if err := check(C.connectplugin_plugin_client_config_set_auto_mtls(config, 1, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.TLS != nil {
		topts, err := newTLSOptions(cfg.TLS)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_plugin_client_config_set_tls(config, topts, &cerr)
		C.connectplugin_tls_options_free(topts)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Restart.MaxRestarts > 0 {
		if err := check(C.connectplugin_plugin_client_config_set_restart(config, C.int32_t(cfg.Restart.MaxRestarts),
			C.int64_t(durationToMs(cfg.Restart.InitialBackoff)), C.int64_t(durationToMs(cfg.Restart.MaxBackoff)), &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.SHA256 != "" {
		ch, err := cs("SHA-256", cfg.SHA256)
		if err != nil {
			return nil, err
		}
		if err := check(C.connectplugin_plugin_client_config_set_checksum_sha256(config, ch, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	var p *C.connectplugin_plugin_client
	if err := check(C.connectplugin_plugin_client_start(config, &p, &cerr), &cerr); err != nil {
		return nil, err
	}
	pc := &PluginClient{_ptr: p, exit: &pluginExit{done: make(chan struct{})}}
	_, ud := newUserData(pc.exit)
	if err := check(C.connectplugin_plugin_client_on_exit(p, C.connectplugin_plugin_exit_func(C.go_plugin_exit_trampoline),
		C.go_handle_to_user_data(ud), C.connectplugin_free_func(C.go_free_trampoline), &cerr), &cerr); err != nil {
		C.connectplugin_plugin_client_free(p)
		return nil, err
	}
	runtime.SetFinalizer(pc, (*PluginClient).Kill)
	return pc, nil
}

// NegotiatedVersion is the app protocol version the plugin chose.
func (p *PluginClient) NegotiatedVersion() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int(C.connectplugin_plugin_client_negotiated_version(p._ptr))
}

// Pid is the plugin's process id.
func (p *PluginClient) Pid() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int(C.connectplugin_plugin_client_pid(p._ptr))
}

// ReattachInfo is what another host process puts in PluginClientConfig.Reattach to connect to this
// running plugin (go-plugin's ReattachConfig as JSON); "" for a plugin reached by URL.
func (p *PluginClient) ReattachInfo() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p._ptr == nil {
		return ""
	}
	r := C.connectplugin_plugin_client_reattach_info(p._ptr)
	if r == nil {
		return ""
	}
	return C.GoString(r)
}

// Dispense gives a client for plugin name's services over the plugin's connection (gRPC). Wrap it
// in your typed client; closing it does not close the plugin's connection (Kill does).
func (p *PluginClient) Dispense(name string) (*Client, error) {
	cn, err := cString("plugin name", name)
	if err != nil {
		return nil, err
	}
	defer freeCString(cn)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p._ptr == nil {
		return nil, errClosed("plugin client")
	}
	var c *C.connectplugin_client
	var cerr *C.connectplugin_error
	if err := check(C.connectplugin_plugin_client_dispense(p._ptr, cn, &c, &cerr), &cerr); err != nil {
		return nil, err
	}
	client := &Client{_ptr: c, streams: &streamRegistry{open: map[*clientStreamCore]struct{}{}}}
	runtime.SetFinalizer(client, (*Client).Close)
	return client, nil
}

// Ping is go-plugin's Ping: grpc.health.v1.Health/Check for "plugin" (timeout 0: 10 s).
func (p *PluginClient) Ping(timeout time.Duration) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p._ptr == nil {
		return errClosed("plugin client")
	}
	var cerr *C.connectplugin_error
	return check(C.connectplugin_plugin_client_ping(p._ptr, C.int64_t(durationToMs(timeout)), &cerr), &cerr)
}

// PluginIdentity is what a plugin says about itself (PluginClient.Info): connect-plugin-go's
// connectplugin.v1.PluginIdentity/GetPluginInfo. A connectplugin plugin reports its first plugin's
// name and version, and the metadata "app_protocol_version" and "runtime".
type PluginIdentity struct {
	ID       string
	Version  string
	Metadata map[string]string
}

// Info asks the plugin for its id, version and metadata (timeout 0: 10 s). A plugin that does not
// serve connectplugin.v1.PluginIdentity (go-plugin plugins do not) gives an *Error with
// CodeUnimplemented; its NegotiatedVersion and Pid are known without it.
func (p *PluginClient) Info(timeout time.Duration) (PluginIdentity, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p._ptr == nil {
		return PluginIdentity{}, errClosed("plugin client")
	}
	var info *C.connectplugin_plugin_info
	var cerr *C.connectplugin_error
	if err := check(C.connectplugin_plugin_client_info(p._ptr, C.int64_t(durationToMs(timeout)), &info, &cerr), &cerr); err != nil {
		return PluginIdentity{}, err
	}
	defer C.connectplugin_plugin_info_free(info)
	id := PluginIdentity{
		ID:       C.GoString(C.connectplugin_plugin_info_id(info)),
		Version:  C.GoString(C.connectplugin_plugin_info_version(info)),
		Metadata: map[string]string{},
	}
	n := C.connectplugin_plugin_info_metadata_count(info)
	for i := C.size_t(0); i < n; i++ {
		var k, v *C.char
		if C.connectplugin_plugin_info_metadata_get(info, i, &k, &v) == C.CONNECTPLUGIN_OK {
			id.Metadata[C.GoString(k)] = C.GoString(v)
		}
	}
	return id, nil
}

// Exited reports how the plugin process ended: ok is false while it runs; otherwise status is its
// exit status, or the signal that ended it when signaled is true.
func (p *PluginClient) Exited() (status int, signaled bool, ok bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p._ptr == nil {
		return p.endStatus, p.endSignaled, p.ended
	}
	return p.exited()
}

func (p *PluginClient) exited() (status int, signaled bool, ok bool) {
	var v C.int32_t
	return exitResult(C.connectplugin_plugin_client_exit_status(p._ptr, &v), v)
}

// exitResult reads the C ABI's exit kind (1 exited, 2 signaled, 3 unknown, 0 still running).
func exitResult(kind C.int32_t, v C.int32_t) (status int, signaled bool, ok bool) {
	switch kind {
	case 1:
		return int(v), false, true
	case 2:
		return int(v), true, true
	case 3:
		return -1, false, true
	}
	return 0, false, false
}

// Kill stops the plugin (Shutdown, grace, SIGTERM, grace, SIGKILL), waits until it ended, and
// frees the handle. Calling it again is a no-op.
func (p *PluginClient) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p._ptr == nil {
		return
	}
	runtime.SetFinalizer(p, nil)
	var cerr *C.connectplugin_error
	_ = check(C.connectplugin_plugin_client_kill(p._ptr, &cerr), &cerr)
	p.endStatus, p.endSignaled, p.ended = p.exited()
	C.connectplugin_plugin_client_free(p._ptr)
	p._ptr = nil
}

// Done is closed when the plugin process has ended, expectedly (Kill) or not (a crash); Exited
// then tells how. Calls in flight when it died fail with CodeUnavailable, the message naming the
// plugin and its exit status.
func (p *PluginClient) Done() <-chan struct{} {
	return p.exit.done
}

// CleanupPlugins stops every plugin this process started and has not killed (go-plugin's
// CleanupClients), in parallel, and returns when all ended. Call it (e.g. deferred in main)
// before the host exits. Plugins never outlive a host that is killed: the library gives them
// the parent-death signal SIGKILL.
func CleanupPlugins() {
	C.connectplugin_plugin_cleanup_all()
}

// Restarts is how many times the restart policy relaunched the plugin.
func (p *PluginClient) Restarts() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int(C.connectplugin_plugin_client_restart_count(p._ptr))
}

// WaitExit blocks until the plugin process ended or timeout passed (negative: no limit) and
// reports as Exited. It waits in short slices, so Kill from another goroutine is not held up.
func (p *PluginClient) WaitExit(timeout time.Duration) (status int, signaled bool, ok bool) {
	deadline := time.Now().Add(timeout)
	for {
		slice := 100 * time.Millisecond
		if timeout >= 0 {
			if left := time.Until(deadline); left < slice {
				slice = left
			}
			if slice < 0 {
				slice = 0
			}
		}
		p.mu.RLock()
		if p._ptr == nil {
			p.mu.RUnlock()
			return p.endStatus, p.endSignaled, p.ended
		}
		var v C.int32_t
		kind := C.connectplugin_plugin_client_wait_exit(p._ptr, C.int64_t(durationToMs(slice)), &v)
		p.mu.RUnlock()
		if st, sig, ok := exitResult(kind, v); ok {
			return st, sig, ok
		}
		if timeout >= 0 && !time.Now().Before(deadline) {
			return 0, false, false
		}
	}
}
