package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"os"
	"runtime"
	"sort"
	"time"
)

// PluginInfo declares one plugin a plugin binary serves: its name (what a host dispenses, e.g.
// "kv"), its own version, and the path of its service (e.g. "/pkg.v1.KVService/"), reported by the
// handshake and identity services.
type PluginInfo struct {
	Name        string
	Version     string
	ServicePath string
}

// PluginConfig is what ServePlugin needs besides the server: the handshake's magic cookie and the
// plugins per app protocol version (go-plugin's VersionedPlugins).
type PluginConfig struct {
	CookieKey   string
	CookieValue string
	// Plugins maps each app protocol version to the plugins served at it.
	Plugins map[int][]PluginInfo
	// Network is "unix" (default: an owner-only Unix socket) or "tcp" (127.0.0.1).
	Network string
	// Grace is how long calls in flight may take once the plugin stops (0: the default, 5 s).
	Grace time.Duration
	// Logger receives the runtime's own log records (started, stopping, ...) instead of hclog
	// lines on the real stderr (nil). The plugin's own logs: PluginLog, PluginLogger.
	Logger func(r LogRecord)
	// TLS is the plugin's own server TLS (go-plugin's TLSProvider; certificate and key required),
	// used instead of AutoMTLS. Without it, a host asking for AutoMTLS gets it.
	TLS *TLSConfig
	// Listen, when set ("host:port", port 0 picks one, or "unix:PATH"), is remote mode: the plugin
	// serves as a standalone network service that hosts reach by URL (PluginClientConfig.URL),
	// prints "listening on ADDR" instead of the handshake line and needs no cookie in its
	// environment (the Handshake RPC checks it). Empty: the CONNECTPLUGIN_LISTEN environment
	// variable, if set, gives the address. TLS: the TLS field, or else the PEM files named by
	// CONNECTPLUGIN_TLS_CERT and CONNECTPLUGIN_TLS_KEY (with CONNECTPLUGIN_TLS_CLIENT_CA: mutual
	// TLS); hosts then use an https:// URL.
	Listen string
}

// HealthState is connect-plugin-go's three-state health.
type HealthState int32

const (
	HealthHealthy   HealthState = C.CONNECTPLUGIN_HEALTH_HEALTHY
	HealthDegraded  HealthState = C.CONNECTPLUGIN_HEALTH_DEGRADED
	HealthUnhealthy HealthState = C.CONNECTPLUGIN_HEALTH_UNHEALTHY
)

// ServePlugin serves s as a plugin that an unmodified HashiCorp go-plugin host (or a connectplugin
// host) launches: it checks the magic cookie, negotiates the app version, listens, prints the
// handshake line and serves until the host calls Shutdown, SIGTERM or SIGINT arrives, or the host
// is gone. Register the handlers first; do not Listen or Start. Call it once, from main, and pass
// its result to os.Exit: 0 after a clean stop, 2 when a person ran the binary (the message is on
// stderr), 1 when serving could not start (the reason is on stderr).
//
// The library turns SIGTERM and SIGINT into a graceful stop itself: do not signal.Notify them.
func (s *Server) ServePlugin(cfg PluginConfig) int {
	config, err := newPluginConfig(cfg)
	if err != nil {
		return failPlugin(err)
	}
	defer C.connectplugin_plugin_config_free(config)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return failPlugin(errClosed("server"))
	}
	rc := C.connectplugin_plugin_serve(s._ptr, config)
	runtime.KeepAlive(s)
	return int(rc)
}

// ServePluginInProcess serves s as an in-process plugin under name (letters, digits and -._~) and
// returns at once with its URL, "inproc://NAME": a host in this process reaches it with
// StartPlugin(PluginClientConfig{URL: url, ...}) and calls it through the same typed client as a
// launched plugin, with no socket. Register the handlers first; do not Listen or Start. Stop it
// with Stop or Close.
func (s *Server) ServePluginInProcess(cfg PluginConfig, name string) (string, error) {
	config, err := newPluginConfig(cfg)
	if err != nil {
		return "", err
	}
	defer C.connectplugin_plugin_config_free(config)
	cn, err := cString("in-process name", name)
	if err != nil {
		return "", err
	}
	defer freeCString(cn)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return "", errClosed("server")
	}
	var cerr *C.connectplugin_error
	if err := check(C.connectplugin_plugin_serve_in_process(s._ptr, config, cn, &cerr), &cerr); err != nil {
		return "", err
	}
	runtime.KeepAlive(s)
	return "inproc://" + name, nil
}

func newPluginConfig(cfg PluginConfig) (*C.connectplugin_plugin_config, error) {
	key, err := cString("cookie key", cfg.CookieKey)
	if err != nil {
		return nil, err
	}
	defer freeCString(key)
	value, err := cString("cookie value", cfg.CookieValue)
	if err != nil {
		return nil, err
	}
	defer freeCString(value)
	var config *C.connectplugin_plugin_config
	var cerr *C.connectplugin_error
	if err := check(C.connectplugin_plugin_config_new(key, value, &config, &cerr), &cerr); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			C.connectplugin_plugin_config_free(config)
		}
	}()
	versions := make([]int, 0, len(cfg.Plugins))
	for v := range cfg.Plugins {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	for _, v := range versions {
		for _, p := range cfg.Plugins[v] {
			if err := addPlugin(config, v, p); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Network != "" {
		n, err := cString("network", cfg.Network)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_plugin_config_set_network(config, n, &cerr)
		freeCString(n)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Grace > 0 {
		if err := check(C.connectplugin_plugin_config_set_grace_ms(config, C.int64_t(durationToMs(cfg.Grace)), &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Listen != "" {
		l, err := cString("listen address", cfg.Listen)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_plugin_config_set_listen_address(config, l, &cerr)
		freeCString(l)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.Logger != nil {
		fn := cfg.Logger
		_, ud := newUserData(&logEntry{fn: func(_ string, r LogRecord) { fn(r) }}) // deleted by goFreeHandle
		status := C.connectplugin_plugin_config_set_logger(config, C.connectplugin_log_func(C.go_log_trampoline),
			C.go_handle_to_user_data(ud), C.connectplugin_free_func(C.go_free_trampoline), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.TLS != nil {
		topts, err := newTLSOptions(cfg.TLS)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_plugin_config_set_tls(config, topts, &cerr)
		C.connectplugin_tls_options_free(topts)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	ok = true
	return config, nil
}

func addPlugin(config *C.connectplugin_plugin_config, version int, p PluginInfo) error {
	name, err := cString("plugin name", p.Name)
	if err != nil {
		return err
	}
	defer freeCString(name)
	ver, err := cString("plugin version", p.Version)
	if err != nil {
		return err
	}
	defer freeCString(ver)
	path, err := cString("service path", p.ServicePath)
	if err != nil {
		return err
	}
	defer freeCString(path)
	var cerr *C.connectplugin_error
	return check(C.connectplugin_plugin_config_add_plugin(config, C.int32_t(version), name, ver, path, &cerr), &cerr)
}

func failPlugin(err error) int {
	_, _ = os.Stderr.WriteString("connectplugin: cannot serve the plugin: " + err.Error() + "\n")
	return 1
}

// SetPluginHealth sets the health the plugin reports while ServePlugin runs (from any
// goroutine): healthy and degraded answer SERVING on grpc.health.v1, unhealthy NOT_SERVING;
// watchers see the change at once.
func (s *Server) SetPluginHealth(state HealthState, reason string) error {
	r, err := cString("reason", reason)
	if err != nil {
		return err
	}
	defer freeCString(r)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return errClosed("server")
	}
	var cerr *C.connectplugin_error
	status := C.connectplugin_plugin_set_health(s._ptr, C.int32_t(state), r, &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}
