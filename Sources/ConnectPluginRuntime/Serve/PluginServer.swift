// The plugin side of the runtime: what `serve` does, in go-plugin's order (plugin-wire.md §1.1):
//   1. check the magic cookie (run by a person: say so and exit 2);
//   2. negotiate the app version from PLUGIN_PROTOCOL_VERSIONS against the versioned plugin sets;
//   3. listen: a Unix socket (default; owner-only, PLUGIN_UNIX_SOCKET_DIR, PLUGIN_UNIX_SOCKET_GROUP,
//      a path too long for the kernel avoided or reported) or 127.0.0.1 TCP in
//      PLUGIN_MIN_PORT..PLUGIN_MAX_PORT; gRPC, Connect and gRPC-Web on the one listener; over TLS
//      with the plugin's own TLS config (go-plugin's TLSProvider) or, when the host sent its
//      certificate in PLUGIN_CLIENT_CERT, AutoMTLS (a fresh certificate, client certificates that
//      chain to the host's required, TLS 1.2+, ALPN h2);
//   4. register the control services and the chosen set's plugins;
//   5. move fd 1 and fd 2 onto pipes forwarded through plugin.GRPCStdio (so the plugin's own writes
//      cannot corrupt the handshake channel), keeping the real ones for the handshake line and logs;
//   6. print the handshake line, nothing before it (field 6: the AutoMTLS certificate);
//   7. serve until Shutdown, SIGTERM, SIGINT, or the host that launched it is gone; then stop
//      gracefully within the grace period.
// Remote mode (`listenAddress`, or CONNECTPLUGIN_LISTEN in the environment): the plugin is a
// standalone network service that hosts reach by URL. No cookie in the environment is needed (the
// cookie is checked by connectplugin.v1.HandshakeService/Handshake instead); the version set is the
// one PLUGIN_PROTOCOL_VERSIONS picks if set, else the highest; it listens on ADDR ("host:port", port
// 0 picks one, "unix:PATH", or "inproc:NAME" for an in-process plugin: see PluginClient's
// in-process mode), prints `listening on ADDR` (the bound address) instead of the
// handshake line, keeps fd 1 and 2 as they are, does not watch its parent, and serves the same
// control services until Shutdown, SIGTERM or SIGINT. Over TLS with `tls`, or with the PEM files
// named by CONNECTPLUGIN_TLS_CERT and CONNECTPLUGIN_TLS_KEY (plus CONNECTPLUGIN_TLS_CLIENT_CA: mutual
// TLS); hosts then use an https:// URL.

import CConnectPluginPosix
import ConnectPluginHTTP
import ConnectPluginIO
import ConnectPluginRPC
import Glibc

/// One plugin of a set: how to register its service on the plugin's server.
public struct PluginRegistration: Sendable {
    public var version: String
    /// The path prefix of its service, e.g. "/kv.v1.KVService/" (informational, for PluginInfo).
    public var servicePath: String
    public var register: @Sendable (RPCServer) throws -> Void

    public init(version: String = "", servicePath: String = "", register: @escaping @Sendable (RPCServer) throws -> Void) {
        self.version = version
        self.servicePath = servicePath
        self.register = register
    }
}

public struct PluginServeConfig: Sendable {
    public var handshake: HandshakeConfig
    /// App protocol version → plugin name → registration.
    public var versionedPlugins: [Int: [String: PluginRegistration]]
    /// Unix socket (default) or TCP on 127.0.0.1.
    public var network: PluginNetwork = .unix
    /// How long in-flight calls may take to finish once shutdown starts.
    public var gracePeriodMs: Int64 = 5000
    /// The environment to read (nil = the process's).
    public var environment: [String: String]? = nil
    /// Move fd 1 and 2 onto forwarded pipes (off only in tests that run serve inside a test process).
    public var redirectStdio = true
    /// Where the handshake line goes (nil = the real stdout).
    public var handshakeFD: Int32? = nil
    /// Log records from the runtime itself (nil = hclog JSON lines on the real stderr, as the
    /// plugin's own PluginLog lines).
    public var logger: (@Sendable (LogRecord) -> Void)? = nil
    /// Stop when the parent process changes (the host is gone).
    public var watchParent = true
    /// Turn SIGTERM and SIGINT into a graceful stop (off in tests inside a test process).
    public var handleSignals = true
    /// The plugin's server (handler threads, limits, interceptors added by the registrations).
    public var serverOptions = RPCServer.Options()
    /// The plugin's own server TLS (manual TLS, go-plugin's TLSProvider): used instead of AutoMTLS
    /// when set; the handshake line then carries no certificate and the host needs its own TLS config.
    public var tls: TLSConfig? = nil
    /// Remote mode: listen on this address ("host:port" or "unix:PATH") as a standalone service
    /// (nil: CONNECTPLUGIN_LISTEN from the environment, if set and not empty).
    public var listenAddress: String? = nil

    /// The environment variable that turns on remote mode with its address.
    public static let listenEnvironmentKey = "CONNECTPLUGIN_LISTEN"
    /// Remote mode without `tls`: the server certificate chain and key (PEM files) from these
    /// variables turn on TLS; with `tlsClientCAEnvironmentKey` too, clients must present a
    /// certificate signed by those CAs (mutual TLS).
    public static let tlsCertEnvironmentKey = "CONNECTPLUGIN_TLS_CERT"
    public static let tlsKeyEnvironmentKey = "CONNECTPLUGIN_TLS_KEY"
    public static let tlsClientCAEnvironmentKey = "CONNECTPLUGIN_TLS_CLIENT_CA"

    public init(handshake: HandshakeConfig, versionedPlugins: [Int: [String: PluginRegistration]]) {
        self.handshake = handshake
        self.versionedPlugins = versionedPlugins
    }
}

/// Why serving could not start. The description says what to do.
public enum PluginServeError: Error, Sendable, CustomStringConvertible {
    /// Not launched by a host (no cookie): print `message` and exit with `exitStatus`.
    case notLaunchedByHost(message: String)
    case cookieMismatch(String)
    case misconfigured(String)
    case listen(String)

    public var description: String {
        switch self {
        case .notLaunchedByHost(let m): return m
        case .cookieMismatch(let m), .misconfigured(let m), .listen(let m): return m
        }
    }

    public var exitStatus: Int32 {
        switch self {
        case .notLaunchedByHost: return HandshakeConfig.runDirectlyExitStatus
        default: return 1
        }
    }
}

public final class PluginServer: @unchecked Sendable {
    public let config: PluginServeConfig
    public let server: RPCServer
    /// The health the control services report (its services are known once `start` chose a set).
    public private(set) var health = PluginHealth(pluginNames: [])
    public let stdio = StdioForwarder()
    public private(set) var handshakeLine: HandshakeLine?
    /// Remote mode: the address it listens on (nil in plugin mode, or before start).
    public private(set) var remoteAddress: String?
    private let cond = ConditionLock()
    private var inProcessListen: String?
    private var shutdownReason: String?
    private var socketPath: String?
    private var realStdout: Int32 = -1
    private var realStderr: Int32 = -1
    private var savedStdout: Int32 = -1
    private var savedStderr: Int32 = -1
    private var signalPipe: (Int32, Int32) = (-1, -1)
    private let env: [String: String]

    public init(config: PluginServeConfig) throws {
        self.config = config
        env = config.environment ?? currentEnvironment()
        server = try RPCServer(options: config.serverOptions)
    }

    /// Serves `server`, whose handlers the caller registered already (the C ABI's way: every
    /// plugin's services are on it, and the plugin sets only name the plugins per version). It must
    /// not be started nor listening.
    public init(config: PluginServeConfig, server: RPCServer) throws {
        if !server.addresses.isEmpty {
            throw ConnectError.local(.state, "the plugin's server must not listen yet: serve chooses the listener")
        }
        self.config = config
        env = config.environment ?? currentEnvironment()
        self.server = server
    }

    func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        let r = LogRecord(level: level, message: message, timestamp: hclogTimestamp(), fields: fields)
        if let l = config.logger {
            l(r)
            return
        }
        PluginLog.write(r)
    }

    /// The plugin's own logs: an hclog JSON line on the real stderr, which the host parses (see
    /// PluginLog). Any thread, before, while and after serving.
    public static func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        PluginLog.log(level, message, fields)
    }

    /// Steps 1–6: checks, negotiates, listens, prints the handshake line. Returns the line printed.
    public func start() throws -> HandshakeLine {
        if let a = inProcessListen ?? config.listenAddress ?? env[PluginServerConfigKeys.listen], !a.isEmpty { return try startRemote(a) }
        switch config.handshake.check(environment: env) {
        case .ok: break
        case .missing: throw PluginServeError.notLaunchedByHost(message: HandshakeConfig.runDirectlyMessage)
        case .misconfigured: throw PluginServeError.misconfigured(config.handshake.explain(.misconfigured) ?? "")
        case .mismatch: throw PluginServeError.cookieMismatch(config.handshake.explain(.mismatch(found: "")) ?? "")
        }
        var tls = config.tls
        var certField = ""
        if tls == nil, let hostPEM = env[PluginEnvironment.clientCertKey], !hostPEM.isEmpty {
            let cert: AutoMTLSCertificate
            do { cert = try AutoMTLSCertificate.generate() } catch let e as ConnectError {
                throw PluginServeError.listen(e.message)
            }
            tls = AutoMTLS.serverConfig(plugin: cert, hostCertPEM: Array(hostPEM.utf8))
            certField = cert.handshakeField
        }
        if let t = tls {
            // Checked once here, so that a bad certificate is not taken for a busy port below.
            do { _ = try TLSContext(config: t, isServer: true) } catch let e as HTTPError {
                throw PluginServeError.misconfigured(certField.isEmpty ? "the plugin's TLS config is unusable: \(e.message)"
                    : "the host's AutoMTLS certificate (PLUGIN_CLIENT_CERT) is unusable: \(e.message)")
            }
        }
        let (hostVersions, invalid) = VersionNegotiation.parseHostVersions(env[VersionNegotiation.environmentKey])
        for bad in invalid { log(.warn, "the host sent an invalid plugin version", [("version", bad)]) }
        guard let version = VersionNegotiation.negotiate(hostVersions: hostVersions, pluginVersions: Array(config.versionedPlugins.keys)),
              let set = config.versionedPlugins[version] else {
            throw PluginServeError.misconfigured("the plugin declares no plugin sets; give it at least one version")
        }
        let names = set.keys.sorted()
        let infos = names.map { PluginInfo(name: $0, version: set[$0]?.version ?? "", servicePath: set[$0]?.servicePath ?? "") }
        let health = PluginHealth(pluginNames: names)
        let control = ControlServices(handshake: config.handshake, appVersion: version, plugins: infos, health: health,
                                      stdio: stdio, onShutdown: { [weak self] why in self?.requestShutdown(why) })
        do {
            try control.register(on: server)
            for n in names { try set[n]?.register(server) }
        } catch let e as ConnectError {
            throw PluginServeError.misconfigured("cannot register the plugin's services: \(e.message)")
        }
        self.health = health
        let (network, address) = try listen(tls: tls)
        do { try server.start() } catch let e as ConnectError { throw PluginServeError.listen(e.message) }
        if config.redirectStdio { try redirectStdio() }
        if config.handleSignals { installSignals() }
        let line = HandshakeLine(appVersion: version, network: network, address: address, serverCert: certField,
                                 multiplexSupported: env[PluginEnvironment.multiplexKey] != nil ? false : nil)
        let out = config.handshakeFD ?? (realStdout >= 0 ? realStdout : 1)
        let bytes = Array((line.formatted + "\n").utf8)
        let rc = bytes.withUnsafeBytes { cp_write_all(out, $0.baseAddress, UInt($0.count)) }
        if rc != 0 { throw PluginServeError.listen("cannot write the handshake line to stdout: \(String(cString: cp_strerror(-rc)))") }
        handshakeLine = line
        log(.debug, "plugin started", [("address", address), ("network", network.rawValue), ("version", String(version))])
        return line
    }

    /// Remote mode's start: the version set, the services, the listener, `listening on ADDR`.
    /// Returns a handshake line describing the listener (it is not printed).
    private func startRemote(_ listen: String) throws -> HandshakeLine {
        if config.handshake.cookieKey.isEmpty || config.handshake.cookieValue.isEmpty {
            throw PluginServeError.misconfigured(config.handshake.explain(.misconfigured) ?? "the magic cookie key and value must be set")
        }
        let (hostVersions, _) = VersionNegotiation.parseHostVersions(env[VersionNegotiation.environmentKey])
        let mine = Array(config.versionedPlugins.keys)
        let chosen = hostVersions.isEmpty ? mine.max() : VersionNegotiation.negotiate(hostVersions: hostVersions, pluginVersions: mine)
        guard let version = chosen, let set = config.versionedPlugins[version] else {
            throw PluginServeError.misconfigured("the plugin declares no plugin sets; give it at least one version")
        }
        let names = set.keys.sorted()
        let infos = names.map { PluginInfo(name: $0, version: set[$0]?.version ?? "", servicePath: set[$0]?.servicePath ?? "") }
        let health = PluginHealth(pluginNames: names)
        let control = ControlServices(handshake: config.handshake, appVersion: version, plugins: infos, health: health,
                                      stdio: stdio, onShutdown: { [weak self] why in self?.requestShutdown(why) })
        do {
            try control.register(on: server)
            for n in names { try set[n]?.register(server) }
        } catch let e as ConnectError {
            throw PluginServeError.misconfigured("cannot register the plugin's services: \(e.message)")
        }
        self.health = health
        let tls = listen.hasPrefix("inproc:") ? nil : try remoteTLS()
        let network: PluginNetwork
        let address: String
        do {
            if listen.hasPrefix("inproc:") {
                var name = String(listen.dropFirst(7))
                if name.hasPrefix("//") { name = String(name.dropFirst(2)) }
                network = .tcp
                address = try server.listenInProcess(name)
            } else if listen.hasPrefix("unix:") {
                var path = String(listen.dropFirst(5))
                if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
                if path.utf8.count > 107 {
                    throw PluginServeError.misconfigured("the socket path \(path) is \(path.utf8.count) bytes, over the kernel's 107-byte limit; choose a shorter path")
                }
                _ = try server.listenUnix(path, tls: tls)
                socketPath = path
                network = .unix
                address = path
            } else {
                network = .tcp
                address = try server.listenTCP(listen, tls: tls)
            }
        } catch let e as ConnectError {
            throw PluginServeError.listen("cannot listen on \(listen) (\(PluginServerConfigKeys.listen) or --listen): \(e.message)")
        }
        do { try server.start() } catch let e as ConnectError { throw PluginServeError.listen(e.message) }
        if config.handleSignals && inProcessListen == nil { installSignals() }
        let shown = network == .unix ? "unix:" + address : address
        if !listen.hasPrefix("inproc:") {  // an in-process plugin shares the host's stdout
            let out = config.handshakeFD ?? 1
            let bytes = Array("listening on \(shown)\n".utf8)
            let rc = bytes.withUnsafeBytes { cp_write_all(out, $0.baseAddress, UInt($0.count)) }
            if rc != 0 { throw PluginServeError.listen("cannot write to stdout: \(String(cString: cp_strerror(-rc)))") }
        }
        remoteAddress = shown
        let line = HandshakeLine(appVersion: version, network: network, address: address, multiplexSupported: nil)
        handshakeLine = line
        var fields = [("address", shown), ("version", String(version))]
        if let t = tls { fields.append(("tls", t.requireClientCert ? "mutual" : "server")) }
        log(.info, listen.hasPrefix("inproc:") ? "plugin serving in process" : "plugin serving in remote mode", fields)
        return line
    }

    /// Remote mode's TLS: the config's, else CONNECTPLUGIN_TLS_CERT/_KEY (and _CLIENT_CA for mutual
    /// TLS) from the environment, else none. Loaded once here so that a bad file is named as such.
    private func remoteTLS() throws -> TLSConfig? {
        typealias K = PluginServeConfig
        var tls = config.tls
        if tls == nil {
            let cert = env[K.tlsCertEnvironmentKey] ?? "", key = env[K.tlsKeyEnvironmentKey] ?? "", ca = env[K.tlsClientCAEnvironmentKey] ?? ""
            if cert.isEmpty != key.isEmpty {
                throw PluginServeError.misconfigured("remote-mode TLS needs both \(K.tlsCertEnvironmentKey) and \(K.tlsKeyEnvironmentKey) "
                    + "(PEM files); only \(cert.isEmpty ? K.tlsKeyEnvironmentKey : K.tlsCertEnvironmentKey) is set")
            }
            if cert.isEmpty && !ca.isEmpty {
                throw PluginServeError.misconfigured("\(K.tlsClientCAEnvironmentKey) needs \(K.tlsCertEnvironmentKey) and \(K.tlsKeyEnvironmentKey) "
                    + "(the plugin's own certificate and key)")
            }
            if !cert.isEmpty {
                tls = .server(certificateChain: .file(cert), privateKey: .file(key), clientCAs: ca.isEmpty ? nil : .file(ca),
                              requireClientCert: !ca.isEmpty)
            }
        }
        if let t = tls {
            do { _ = try TLSContext(config: t, isServer: true) } catch let e as HTTPError {
                throw PluginServeError.misconfigured("the plugin's TLS config is unusable: \(e.message)")
            }
        }
        return tls
    }

    /// In-process plugin: serves the plugin (its highest plugin set, with the control services)
    /// under "inproc://NAME" in this process, without sockets, signals or stdout, and returns at
    /// once with that URL. A host reaches it with `PluginClientConfig(url: "inproc://NAME")`; stop
    /// it with `stop`. Names are 1–255 letters, digits and -._~.
    public func startInProcess(name: String) throws -> String {
        inProcessListen = "inproc:" + name
        let l = try start()
        return "inproc://" + l.address.replacingPrefix("inproc://")
    }

    /// Sets the plugin's health; watchers see it at once.
    public func setHealth(_ state: HealthState, reason: String = "") { health.set(state, reason: reason) }

    private func listen(tls: TLSConfig?) throws -> (PluginNetwork, String) {
        switch config.network {
        case .unix:
            let path = try socketPathChoice()
            do { _ = try server.listenUnix(path, tls: tls) } catch let e as ConnectError {
                throw PluginServeError.listen("cannot listen on the Unix socket \(path): \(e.message); set PLUGIN_UNIX_SOCKET_DIR to a writable directory")
            }
            socketPath = path
            var mode: mode_t = 0o600
            if let g = env[PluginEnvironment.socketGroupKey], !g.isEmpty {
                guard let gid = groupID(g) else {
                    throw PluginServeError.misconfigured("PLUGIN_UNIX_SOCKET_GROUP names group \"\(g)\", which does not exist")
                }
                if chown(path, uid_t.max, gid) != 0 {
                    throw PluginServeError.listen("cannot give the socket \(path) to group \(g): \(String(cString: cp_strerror(cp_errno())))")
                }
                mode = 0o660
            }
            _ = chmod(path, mode)
            return (.unix, path)
        case .tcp:
            let lo = env[PluginEnvironment.minPortKey].flatMap { Int($0) }
            let hi = env[PluginEnvironment.maxPortKey].flatMap { Int($0) }
            if lo == nil && hi == nil {
                do { return (.tcp, try server.listenTCP("127.0.0.1:0", tls: tls)) } catch let e as ConnectError {
                    throw PluginServeError.listen("cannot listen on 127.0.0.1: \(e.message)")
                }
            }
            let from = max(1, lo ?? 1), to = min(65535, hi ?? 65535)
            if from > to {
                throw PluginServeError.misconfigured("PLUGIN_MIN_PORT (\(from)) is above PLUGIN_MAX_PORT (\(to))")
            }
            for p in from...to {
                if let a = try? server.listenTCP("127.0.0.1:\(p)", tls: tls) { return (.tcp, a) }
            }
            throw PluginServeError.listen("no free port on 127.0.0.1 between PLUGIN_MIN_PORT=\(from) and PLUGIN_MAX_PORT=\(to); widen the range")
        }
    }

    /// sun_path holds 108 bytes with the NUL. An explicit PLUGIN_UNIX_SOCKET_DIR that is too long is
    /// an error that says so; a long TMPDIR falls back to /tmp (go-plugin fails with "Unrecognized
    /// remote plugin message" there: terraform#22198).
    func socketPathChoice() throws -> String {
        var rng = SystemRandomNumberGenerator()
        let name = "plugin" + String(rng.next() % 1_000_000_000)
        if let dir = env[PluginEnvironment.socketDirKey], !dir.isEmpty {
            let p = join(dir, name)
            if p.utf8.count > 107 {
                throw PluginServeError.misconfigured("the plugin's socket path \(p) is \(p.utf8.count) bytes, over the kernel's "
                    + "107-byte limit for Unix socket paths; set PLUGIN_UNIX_SOCKET_DIR to a shorter directory")
            }
            return p
        }
        let tmp = env["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let p = join(tmp, name)
        if p.utf8.count <= 107 { return p }
        log(.warn, "TMPDIR is too long for a Unix socket path; using /tmp", [("tmpdir", tmp)])
        return join("/tmp", name)
    }

    private func join(_ dir: String, _ name: String) -> String { dir.hasSuffix("/") ? dir + name : dir + "/" + name }

    private func groupID(_ g: String) -> gid_t? {
        if let n = UInt32(g) { return gid_t(n) }
        guard let gr = getgrnam(g) else { return nil }
        return gr.pointee.gr_gid
    }

    private func redirectStdio() throws {
        for (fd, channel) in [(Int32(1), StdioData.Channel.stdout), (Int32(2), StdioData.Channel.stderr)] {
            let keep = cp_dup_cloexec(fd)
            var fds: [Int32] = [-1, -1]
            if keep < 0 || cp_pipe(&fds) != 0 {
                throw PluginServeError.listen("cannot redirect the plugin's fd \(fd): \(String(cString: cp_strerror(-keep)))")
            }
            if fd == 1 {
                realStdout = keep
            } else {
                realStderr = keep
            }
            _ = cp_dup2(fds[1], fd)
            _ = cp_close(fds[1])
            let r = fds[0]
            let stdio = self.stdio
            startThread(name: channel == .stdout ? "cp-stdout" : "cp-stderr") {
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = buf.withUnsafeMutableBytes { cp_read(r, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    stdio.push(channel, Array(buf[0..<n]))
                }
                _ = cp_close(r)
            }
        }
        savedStdout = realStdout
        savedStderr = realStderr
        PluginLog.setDescriptor(realStderr)
    }

    /// SIGTERM and SIGINT become shutdown requests (before the handshake line goes out, so that a
    /// host's signal right after it is never lost).
    private func installSignals() {
        var fds: [Int32] = [-1, -1]
        if cp_pipe(&fds) == 0 {
            signalPipe = (fds[0], fds[1])
            _ = cp_set_nonblocking(fds[1], 1)
            _ = cp_signal_to_pipe(SIGTERM, fds[1])
            _ = cp_signal_to_pipe(SIGINT, fds[1])
            let r = fds[0]
            startThread(name: "cp-signals") { [weak self] in
                var b: UInt8 = 0
                while cp_read(r, &b, 1) == 1 {
                    if b == 0 { break }
                    self?.requestShutdown(b == UInt8(SIGTERM) ? "SIGTERM" : "SIGINT")
                }
            }
        }
    }

    /// Asks `wait` to return (a Shutdown call, a signal, the host gone). Thread-safe.
    public func requestShutdown(_ reason: String) {
        cond.withLock {
            if shutdownReason == nil { shutdownReason = reason }
            cond.broadcast()
        }
    }

    /// Step 7: blocks until shutdown is requested, then stops gracefully. Returns the reason.
    public func wait() -> String {
        let parent = getppid()
        let reason: String = cond.withLock {
            while shutdownReason == nil {
                _ = cond.wait(untilNs: monotonicNowNs() &+ 250_000_000)
                if shutdownReason == nil && config.watchParent && remoteAddress == nil && parent != 1 && getppid() != parent {
                    shutdownReason = "the host that launched this plugin is gone"
                }
            }
            return shutdownReason ?? ""
        }
        stop(reason)
        return reason
    }

    private var stopped = false

    /// Stops serving (idempotent): health NOT_SERVING, calls finish within the grace period, the
    /// socket file removed, fd 1 and 2 given back.
    public func stop(_ reason: String = "stopped") {
        let first: Bool = cond.withLock {
            let f = !stopped
            stopped = true
            if shutdownReason == nil { shutdownReason = reason }
            cond.broadcast()
            return f
        }
        guard first else { return }
        if handshakeLine != nil { log(.info, "plugin stopping", [("reason", reason)]) }
        health.shutdown()
        stdio.close()
        server.stop(graceMs: config.gracePeriodMs)
        if let p = socketPath { _ = unlink(p) }
        if signalPipe.1 >= 0 {
            _ = cp_signal_restore(SIGTERM)
            _ = cp_signal_restore(SIGINT)
            var zero: UInt8 = 0
            _ = cp_write(signalPipe.1, &zero, 1)
            _ = cp_close(signalPipe.1)
        }
        if savedStdout >= 0 { _ = cp_dup2(savedStdout, 1) }
        if savedStderr >= 0 {
            _ = cp_dup2(savedStderr, 2)
            PluginLog.setDescriptor(-1)
        }
    }

    /// The whole of `serve`: start, wait, stop. Returns the process exit status to use, after
    /// printing what went wrong (to the real stderr) if serving could not start.
    public static func serve(_ config: PluginServeConfig) -> Int32 {
        let s: PluginServer
        do { s = try PluginServer(config: config) } catch {
            writeStderr("plugin: cannot create the server: \(error)\n")
            return 1
        }
        return serve(s)
    }

    /// `serve` for a plugin server made already (see `init(config:server:)`).
    public static func serve(_ s: PluginServer) -> Int32 {
        do { _ = try s.start() } catch let e as PluginServeError {
            s.stop("failed to start")
            writeStderr(e.description.hasSuffix("\n") ? e.description : e.description + "\n")
            return e.exitStatus
        } catch {
            s.stop("failed to start")
            writeStderr("plugin: \(error)\n")
            return 1
        }
        _ = s.wait()
        return 0
    }
}

extension String {
    func replacingPrefix(_ p: String) -> String { hasPrefix(p) ? String(dropFirst(p.count)) : self }
}

enum PluginServerConfigKeys {
    static let listen = PluginServeConfig.listenEnvironmentKey
}

public func writeStderr(_ s: String) {
    let b = Array(s.utf8)
    _ = b.withUnsafeBytes { cp_write_all(2, $0.baseAddress, UInt($0.count)) }
}

/// The process's environment (no Foundation).
public func currentEnvironment() -> [String: String] {
    var out: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let i = s.firstIndex(of: "="), out[String(s[..<i])] == nil {
            out[String(s[..<i])] = String(s[s.index(after: i)...])
        }
        p += 1
    }
    return out
}
