// The host side of the runtime (plugin-wire.md §1.13 b) for a plugin it launches, reaches by endpoint
// URL, reattaches to, or runs in process: start the binary with go-plugin's environment, read its
// handshake line, connect, drain its stdio, parse its logs,
// dispense, ping and kill it.
//
//   launch   fork/exec on the spawner thread (managed, below) with the host's environment (unless
//            turned off), go-plugin's variables, then the caller's overrides, which win (go-plugin #162);
//   startup  the first handshake line on stdout within the start timeout; up to `maxJunkLines`
//            other lines before it are logged and skipped (go-plugin fails on the first); errors
//            say what went wrong: not found, not executable, wrong architecture, exited before the
//            handshake (with its status and the last lines of its stderr), timeout, bad line;
//   tls      with `autoMTLS`, a fresh host certificate goes to the plugin in PLUGIN_CLIENT_CERT; a
//            certificate in handshake field 6 (with or without `autoMTLS`, as go-plugin) is the only
//            root trusted for the plugin, server name "localhost", the host certificate as client
//            certificate; `tls` (manual TLS) replaces all of that except field 6's root;
//   connect  gRPC over h2c (or TLS, above) on the printed Unix socket or TCP address;
//            plugin.GRPCStdio/StreamStdio drained from the start (a go-plugin HEAD plugin blocks
//            otherwise) on a second connection (so that calls keep the client's fast path),
//            tolerated when missing (v1.0.1 plugins); stderr read line by line as hclog and passed
//            to the logger with the plugin's name;
//   kill     plugin.GRPCController/Shutdown, the grace period, SIGTERM, a second grace, SIGKILL;
//   exit     `onExit` hooks run once with the status (on an I/O thread); a call that fails in the
//            transport because the plugin died fails with `unavailable` naming the plugin and its
//            exit status (RPCClient's transportErrorMapper);
//   secure   `checksumSHA256`: the binary's SHA-256 is checked before launch (SecureConfig);
//   managed  every started plugin is in a process-wide registry: `PluginClient.cleanupAll()` kills
//            them all; each is spawned from one long-lived spawner thread with PR_SET_PDEATHSIG
//            (SIGKILL), so none outlives a host that is killed (the plugin side also watches its
//            parent, PluginServer).
//   restart  `restart` (off by default; go-plugin #31, #305): on an unexpected exit the plugin is
//            relaunched after an exponential backoff, up to a limit, and re-handshaked; what was
//            dispensed keeps working, as its RPCClient sends through a transport that follows the
//            current connection (PluginTransport);
//   url      remote mode (`PluginClientConfig.url`, instead of the command): a plugin already
//            serving at http://host:port, https://host:port, unix:///path or inproc://NAME (an
//            in-process plugin, `PluginServer.serveInProcess`) is reached over gRPC and
//            handshaken through connectplugin.v1.HandshakeService/Handshake: the host's versions
//            are tried from the highest down, the cookie and the requested plugin names are
//            checked by the plugin, errors list both sides' versions. There is no process:
//            `kill` only disconnects (as connect-plugin-go's Client.Close; the service keeps
//            serving other hosts; call `shutdownRemote` to stop it).
//   reattach `PluginClientConfig.reattach` (PluginReattach, go-plugin's ReattachConfig, exported by
//            an earlier host as `reattachInfo`): connect to the running plugin's address (the pid
//            must be alive), check its version is the host's, ping it; `kill` is Shutdown, then
//            SIGTERM and SIGKILL by pid, watching the pid (it is not this process's child).

import CConnectPluginPosix
import ConnectPluginHTTP
import ConnectPluginIO
import ConnectPluginRPC
import Glibc

public struct PluginCommand: Sendable {
    public var path: String
    public var arguments: [String] = []
    public var workingDirectory: String? = nil
    /// Give the plugin this process's environment (go-plugin's default; its SkipHostEnv is false).
    public var inheritEnvironment = true
    /// Extra variables; they win over both the host's and go-plugin's.
    public var environment: [(String, String)] = []

    public init(path: String, arguments: [String] = []) {
        self.path = path
        self.arguments = arguments
    }
}

/// Relaunching a plugin that exited unexpectedly: after `initialBackoffMs`, doubling up to
/// `maxBackoffMs`, at most `maxRestarts` times in the plugin client's life.
public struct RestartPolicy: Sendable {
    public var maxRestarts: Int
    public var initialBackoffMs: Int64 = 100
    public var maxBackoffMs: Int64 = 5000
    public init(maxRestarts: Int, initialBackoffMs: Int64 = 100, maxBackoffMs: Int64 = 5000) {
        self.maxRestarts = maxRestarts
        self.initialBackoffMs = initialBackoffMs
        self.maxBackoffMs = maxBackoffMs
    }
}

public struct PluginClientConfig: Sendable {
    public var handshake: HandshakeConfig
    /// App protocol version → the plugin names the host can dispense at it.
    public var versionedPlugins: [Int: [String]]
    public var command: PluginCommand
    /// Remote mode: the plugin's endpoint URL; when set, `command` is not used.
    public var url: String? = nil
    /// Reattach to a plugin another host started; when set, `command` is not used.
    public var reattach: PluginReattach? = nil
    public var startTimeoutMs: Int64 = 60_000
    /// Non-handshake lines tolerated on stdout before the handshake line.
    public var maxJunkLines = 16
    /// After Shutdown (and again after SIGTERM), how long to wait before the next step.
    public var killGraceMs: Int64 = 2000
    /// Log records from the plugin's stderr, with the plugin's name (nil: hclog-style lines on
    /// this process's stderr).
    public var logger: (@Sendable (_ plugin: String, LogRecord) -> Void)? = nil
    /// What the plugin's code wrote to its stdout and stderr after the handshake (StreamStdio).
    public var stdio: (@Sendable (StdioData.Channel, [UInt8]) -> Void)? = nil
    /// go-plugin's AutoMTLS (off by default, as there): the host makes a certificate, sends it in
    /// PLUGIN_CLIENT_CERT and talks TLS to the plugin, trusting only the certificate it prints.
    public var autoMTLS = false
    /// Manual TLS (go-plugin's ClientConfig.TLSConfig): the client TLS config for a plugin that serves
    /// TLS of its own; when set, AutoMTLS is not offered (as go-plugin). Give `serverName`.
    public var tls: TLSConfig? = nil
    /// SecureConfig: the expected SHA-256 of the binary, hex (nil: not checked).
    public var checksumSHA256: String? = nil
    /// The signal a plugin gets when the host process ends without stopping it (0: none).
    public var parentDeathSignal: Int32 = SIGKILL
    /// Relaunch on an unexpected exit (nil: never, go-plugin's behaviour).
    public var restart: RestartPolicy? = nil

    public init(handshake: HandshakeConfig, versionedPlugins: [Int: [String]], command: PluginCommand) {
        self.handshake = handshake
        self.versionedPlugins = versionedPlugins
        self.command = command
    }

    /// A host configuration for a plugin already serving at `url` (remote mode).
    public init(handshake: HandshakeConfig, versionedPlugins: [Int: [String]], url: String) {
        self.handshake = handshake
        self.versionedPlugins = versionedPlugins
        self.command = PluginCommand(path: url)
        self.url = url
    }
}

public final class PluginClient: @unchecked Sendable {
    public let config: PluginClientConfig
    /// The name logs carry: the binary's base name.
    public let name: String
    private let cond = ConditionLock()
    private var process: ChildProcess?
    private var stdoutBuffer: [UInt8] = []
    private var stderrBuffer: [UInt8] = []
    private var junk: [String] = []
    private var lastStderr: [String] = []
    private var line: HandshakeLine?
    private var lineError: HandshakeError?
    private var exit: ProcessExitStatus?
    private var exitHooks: [@Sendable (ProcessExitStatus) -> Void] = []
    /// The exit hooks ran (kill returns only after them).
    private var exitNotified = false
    private var client: RPCClient?
    /// The connection StreamStdio is drained on (nil: `client`'s).
    private var stdioClient: RPCClient?
    private var logParser = HCLogParser()
    private var killed = false
    /// This generation's process is being thrown away (a failed start): its exit is expected.
    private var discarding = false
    /// Bumped at every launch; callbacks of an older process are ignored.
    private var generation = 0
    private var restarting = false
    private var restartCount = 0
    /// What dispense returns: an RPCClient over a transport that follows `client`.
    private var dispensed: RPCClient?
    /// The stderr pipe reached end of file (its last lines are in `lastStderr`).
    private var stderrClosed = false

    public init(config: PluginClientConfig) {
        self.config = config
        if let u = config.url {
            name = u
        } else if let r = config.reattach {
            name = "pid \(r.pid) at \(r.address)"
        } else {
            name = config.command.path.split(separator: "/").last.map(String.init) ?? config.command.path
        }
    }

    public var negotiatedVersion: Int? { cond.withLock { line?.appVersion } }
    public var handshakeLine: HandshakeLine? { cond.withLock { line } }
    public var pid: Int32? { cond.withLock { process?.pid ?? (config.reattach.map { $0.pid }) } }

    /// What another host passes to reattach to this plugin (nil before start, and for URL mode).
    public var reattachInfo: PluginReattach? {
        cond.withLock {
            guard config.url == nil, let l = line else { return nil }
            if let r = config.reattach { return r }
            return PluginReattach(appVersion: l.appVersion, network: l.network, address: l.address, pid: process?.pid ?? 0)
        }
    }
    /// How the plugin process ended; nil while it runs.
    public var exitStatus: ProcessExitStatus? { cond.withLock { exit } }
    /// How many times the restart policy relaunched the plugin.
    public var restarts: Int { cond.withLock { restartCount } }
    /// The current connection (the latest launch's).
    var currentClient: RPCClient? { cond.withLock { client } }

    /// Runs `hook` once the plugin process ended (at once if it has), on an I/O thread. With a
    /// restart policy: once it ended for good (killed, the limit reached or a relaunch failed).
    public func onExit(_ hook: @escaping @Sendable (ProcessExitStatus) -> Void) {
        let now: ProcessExitStatus? = cond.withLock {
            if let e = exit { return e }
            exitHooks.append(hook)
            return nil
        }
        if let now { hook(now) }
    }

    func log(_ r: LogRecord) {
        if let l = config.logger {
            l(name, r)
            return
        }
        var s = "[\(r.level.name.uppercased())] \(name): \(r.message)"
        for (k, v) in r.fields { s += " \(k)=\(v)" }
        writeStderr(s + "\n")
    }

    /// Launches the plugin and waits for its handshake; then connects. Throws a ConnectError whose
    /// message says what to change.
    @discardableResult
    public func start() throws -> HandshakeLine {
        if let u = config.url { return try startRemote(u) }
        if let r = config.reattach { return try startReattach(r) }
        let hs = try launch()
        var o = RPCClient.Options()
        o.rpcProtocol = .grpc
        o.maxMessageBytes = 0
        o.transportErrorMapper = { [weak self] e in self?.explainTransportFailure(e) ?? e }
        guard let first = currentClient else { throw ConnectError.local(.state, "plugin \(name) has no connection") }
        let d = try RPCClient(transport: PluginTransport(self, initial: first.transport), baseURL: first.baseURL, options: o)
        cond.withLock { dispensed = d }
        return hs
    }

    /// One launch: spawn, handshake, connect (the current generation).
    private func launch() throws -> HandshakeLine {
        let cmd = config.command
        try checkExecutable(cmd.path)
        if let want = config.checksumSHA256 { try checkChecksum(cmd.path, want) }
        var env = PluginEnvironment(handshake: config.handshake, versions: Array(config.versionedPlugins.keys))
        env.minPort = 10000
        env.maxPort = 25000
        var hostCert: AutoMTLSCertificate? = nil
        if config.autoMTLS && config.tls == nil {
            let c = try AutoMTLSCertificate.generate()
            env.clientCertPEM = String(decoding: c.certificatePEM, as: UTF8.self)
            hostCert = c
        }
        let entries = env.build(host: cmd.inheritEnvironment ? currentEnvironment().map { ($0.key, $0.value) } : nil,
                                overrides: cmd.environment)
        let child: ChildProcess
        let deathSignal = config.parentDeathSignal
        do {
            child = try PluginSpawner.shared.run {
                try ChildProcess.spawn(cmd.path, arguments: cmd.arguments, environment: entries, searchPath: false,
                                       workingDirectory: cmd.workingDirectory, stdin: .null, stdout: .pipe, stderr: .pipe,
                                       parentDeathSignal: deathSignal)
            }
        } catch let e as IOError {
            throw ConnectError.local(.resource, explainSpawnFailure(cmd.path, e))
        }
        let gen: Int = cond.withLock {
            generation += 1
            process = child
            exit = nil
            line = nil
            lineError = nil
            stdoutBuffer = []
            stderrBuffer = []
            junk = []
            lastStderr = []
            stderrClosed = false
            discarding = false
            logParser = HCLogParser()
            return generation
        }
        PluginRegistry.shared.add(self)
        let loop = try EventLoopGroup.shared().next()
        _ = child.watch(on: loop,
                        stdout: FDReader.Handler(data: { [self] b in if isCurrent(gen) { stdoutBytes(b) } }, end: { _ in }),
                        stderr: FDReader.Handler(data: { [self] b in if isCurrent(gen) { stderrBytes(b) } },
                                                 end: { [self] _ in if isCurrent(gen) { stderrEnded() } }),
                        exit: { [self] status in if isCurrent(gen) { exited(status) } })
        let deadline = monotonicNowNs() &+ UInt64(max(0, config.startTimeoutMs)) &* 1_000_000
        let outcome: Result<HandshakeLine, ConnectError> = cond.withLock {
            while line == nil && lineError == nil && exit == nil {
                if !cond.wait(untilNs: deadline) { break }
            }
            // The exit can be seen before the last bytes of stderr: wait (briefly) for its end, so
            // that the error shows the plugin's last words.
            if line == nil && lineError == nil && exit != nil {
                let until = monotonicNowNs() &+ 2_000_000_000
                while !stderrClosed {
                    if !cond.wait(untilNs: until) { break }
                }
            }
            if let l = line { return .success(l) }
            if let e = lineError { return .failure(ConnectError.local(.invalidArgument, "plugin \(name): \(e.description)")) }
            let tail = lastStderr.suffix(10).joined(separator: "\n")
            if let e = exit {
                return .failure(ConnectError(.unavailable, "plugin \(name) \(e) before its handshake"
                    + (tail.isEmpty ? " (it wrote nothing on stderr)" : "; the last lines of its stderr:\n" + tail)))
            }
            return .failure(ConnectError(.deadlineExceeded, "plugin \(name) printed no handshake line within \(config.startTimeoutMs) ms; "
                + "is it a plugin of this host (cookie \(config.handshake.cookieKey))?"
                + (tail.isEmpty ? "" : " The last lines of its stderr:\n" + tail)))
        }
        let hs: HandshakeLine
        switch outcome {
        case .success(let l): hs = l
        case .failure(let e):
            hardKill()
            throw e
        }
        guard config.versionedPlugins[hs.appVersion] != nil else {
            hardKill()
            let e = HandshakeError.incompatibleVersion(plugin: hs.appVersion, host: Array(config.versionedPlugins.keys))
            throw ConnectError.local(.invalidArgument, "plugin \(name): \(e.description)")
        }
        var tls = config.tls
        if !hs.serverCert.isEmpty {
            guard let der = Base64.decode(hs.serverCert), (try? AutoMTLS.describe(der: der)) != nil else {
                hardKill()
                throw ConnectError.local(.invalidArgument, "plugin \(name) printed a handshake line whose certificate (field 6) is not "
                    + "base64 of a DER certificate")
            }
            if var t = tls {
                t.trustedCAs = .pem(PEM.encode(der: der, label: "CERTIFICATE"))
                if t.serverName == nil { t.serverName = "localhost" }
                tls = t
            } else {
                tls = AutoMTLS.clientConfig(host: hostCert, pluginCertDER: der)
            }
        } else if hostCert != nil {
            hardKill()
            throw ConnectError.local(.invalidArgument, "plugin \(name) ignored AutoMTLS: its handshake line has no certificate "
                + "(field 6); it does not support AutoMTLS, so turn autoMTLS off for it")
        }
        var o = RPCClient.Options()
        o.rpcProtocol = .grpc
        o.maxMessageBytes = 0
        o.tls = tls
        o.transportErrorMapper = { [weak self] e in self?.explainTransportFailure(e) ?? e }
        let url = hs.network == .unix ? "unix://" + hs.address : (tls != nil ? "https://" : "http://") + hs.address
        let c: RPCClient
        do { c = try RPCClient(baseURL: url, options: o) } catch {
            hardKill()
            throw error
        }
        // StreamStdio on a connection of its own: a stream open for the plugin's lifetime would keep
        // the calls' connection busy, and a busy connection never takes the client's fast path (a
        // unary call doing its I/O on the caller's thread; H2ClientConnection+CallerDriven.swift),
        // which costs every call to the plugin two thread hand-offs (bench/plugins.py).
        let s = (try? RPCClient(baseURL: url, options: o)) ?? c
        let (old, oldStdio): (RPCClient?, RPCClient?) = cond.withLock {
            defer {
                client = c
                stdioClient = s === c ? nil : s
            }
            return (client, stdioClient)
        }
        old?.close()
        oldStdio?.close()
        startThread(name: "cp-plugin-stdio") { [self] in drainStdio(s) }
        return hs
    }

    private func isCurrent(_ gen: Int) -> Bool { cond.withLock { generation == gen } }

    /// Remote mode's start: connect to `url` and handshake through
    /// connectplugin.v1.HandshakeService/Handshake, the host's versions from the highest down.
    private func startRemote(_ url: String) throws -> HandshakeLine {
        var o = RPCClient.Options()
        o.rpcProtocol = .grpc
        o.maxMessageBytes = 0
        if let t = config.tls {
            // The host's TLS (trusted CAs, client certificate for mutual TLS, server name) for an
            // https:// plugin; without it https:// uses the system's roots.
            guard url.hasPrefix("https://") else {
                throw ConnectError.local(.invalidArgument, "plugin \(name): a TLS config was given but the URL \(url) is not https://; "
                    + "use https://HOST:PORT for a plugin serving TLS in remote mode")
            }
            o.tls = t
        }
        let c = try RPCClient(baseURL: url, options: o)
        let hostVersions = config.versionedPlugins.keys.sorted(by: >)
        var pluginVersion: String?
        for v in hostVersions {
            var req = HandshakeRequest()
            req.coreProtocolVersion = Int32(HandshakeLine.coreProtocolVersion)
            req.appProtocolVersion = Int32(truncatingIfNeeded: v)
            req.magicCookieKey = config.handshake.cookieKey
            req.magicCookieValue = config.handshake.cookieValue
            req.requestedPlugins = (config.versionedPlugins[v] ?? []).sorted()
            let resp: HandshakeResponse
            do {
                let r = try c.unary("/connectplugin.v1.HandshakeService/Handshake", request: req.serialized(),
                                    timeoutMs: max(1, config.startTimeoutMs))
                resp = try HandshakeResponse(serialized: r.message)
            } catch let e as ConnectError {
                if e.code == .failedPrecondition {
                    // "version mismatch: client=N, server=M"
                    if let last = e.message.split(separator: "=").last, e.message.contains("server=") { pluginVersion = String(last) }
                    continue
                }
                c.close()
                switch e.code {
                case .unavailable, .deadlineExceeded:
                    throw ConnectError(e.code, "cannot reach plugin at \(url): \(e.message); is it serving there (e.g. kv-plugin --listen ADDR)?")
                case .unimplemented, .notFound:
                    throw ConnectError(.unimplemented, "the server at \(url) has no connectplugin.v1.HandshakeService; is it a plugin in remote mode "
                        + "(not a plain server)? (\(e.message))")
                case .invalidArgument:
                    throw ConnectError.local(.invalidArgument, "plugin at \(url) refused the handshake: \(e.message)")
                default:
                    throw ConnectError(e.code, "plugin at \(url): handshake failed: \(e.message)")
                }
            } catch {
                c.close()
                throw ConnectError(.internal, "plugin at \(url): cannot decode its handshake response: \(error)")
            }
            let served = Set(resp.plugins.map(\.name))
            let missing = (config.versionedPlugins[v] ?? []).filter { !served.contains($0) }
            if !missing.isEmpty {
                c.close()
                throw ConnectError.local(.invalidArgument, "plugin at \(url) does not serve \(missing.sorted()) at version \(v) "
                    + "(it serves \(served.sorted()))")
            }
            let hs = HandshakeLine(appVersion: v, network: url.hasPrefix("unix:") ? .unix : .tcp, address: url)
            cond.withLock {
                line = hs
                client = c
                dispensed = c
            }
            return hs
        }
        c.close()
        let pv = pluginVersion ?? "unknown"
        throw ConnectError.local(.invalidArgument, "plugin at \(url): no common app protocol version: the plugin serves version "
            + "\(pv), this host supports \(hostVersions.sorted()); give the plugin a plugin set for one of the host's versions "
            + "(or start it with PLUGIN_PROTOCOL_VERSIONS naming one), or the host one for \(pv)")
    }

    private func startReattach(_ r: PluginReattach) throws -> HandshakeLine {
        if r.pid > 0 && !PluginClient.processAlive(r.pid) {
            throw ConnectError(.unavailable, "plugin \(name): process \(r.pid) is gone; start the plugin again (reattach information is only good while it runs)")
        }
        guard config.versionedPlugins[r.appVersion] != nil else {
            let e = HandshakeError.incompatibleVersion(plugin: r.appVersion, host: Array(config.versionedPlugins.keys))
            throw ConnectError.local(.invalidArgument, "plugin \(name): \(e.description)")
        }
        var o = RPCClient.Options()
        o.rpcProtocol = .grpc
        o.maxMessageBytes = 0
        let c = try RPCClient(baseURL: r.network == .unix ? "unix://" + r.address : "http://" + r.address, options: o)
        do {
            let resp = try c.unary("/grpc.health.v1.Health/Check", request: HealthCheckRequest(service: "plugin").serialized(),
                                   timeoutMs: max(1, min(config.startTimeoutMs, 10_000)))
            _ = resp
        } catch let e as ConnectError {
            c.close()
            throw ConnectError(e.code == .unavailable ? .unavailable : e.code, "plugin \(name): cannot reattach: \(e.message)")
        }
        let hs = HandshakeLine(appVersion: r.appVersion, network: r.network, address: r.address)
        cond.withLock {
            line = hs
            client = c
            dispensed = c
        }
        return hs
    }

    /// The process exists and is not a zombie (Linux /proc; kill(pid, 0) elsewhere).
    static func processAlive(_ pid: Int32) -> Bool {
        if Glibc.kill(pid, 0) != 0 { return cp_errno() == EPERM }
        let fd = open("/proc/\(pid)/stat", O_RDONLY)
        if fd < 0 { return true }
        defer { _ = close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0, let close = buf[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { return true }
        let state = buf[close + 2]
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X")
    }

    /// Reattach mode's kill: Shutdown, then SIGTERM and SIGKILL by pid, each after the grace
    /// period, watching the pid.
    private func killReattached(_ r: PluginReattach) {
        let c: RPCClient? = cond.withLock {
            killed = true
            defer { client = nil }
            return client
        }
        _ = try? c?.unary("/plugin.GRPCController/Shutdown", request: [], timeoutMs: max(1, config.killGraceMs))
        c?.close()
        guard r.pid > 0 else { return }
        let grace = UInt64(max(0, config.killGraceMs)) &* 1_000_000
        func gone(within ns: UInt64) -> Bool {
            let until = monotonicNowNs() &+ ns
            while PluginClient.processAlive(r.pid) {
                if monotonicNowNs() >= until { return false }
                usleep(20_000)
            }
            return true
        }
        var ok = gone(within: grace)
        if !ok {
            log(LogRecord(level: .warn, message: "plugin did not exit after Shutdown; sending SIGTERM"))
            _ = Glibc.kill(r.pid, SIGTERM)
            ok = gone(within: grace)
        }
        if !ok {
            log(LogRecord(level: .warn, message: "plugin failed to exit gracefully; sending SIGKILL"))
            _ = Glibc.kill(r.pid, SIGKILL)
            ok = gone(within: 10_000_000_000)
        }
        let hooks: [@Sendable (ProcessExitStatus) -> Void] = cond.withLock {
            exit = .unknown(ok ? "the plugin was started by another host; its exit status went to that host"
                               : "the plugin did not die after SIGKILL")
            cond.broadcast()
            defer { exitHooks = [] }
            return exitHooks
        }
        if let e = exitStatus { for h in hooks { h(e) } }
    }

    /// Remote mode: asks the plugin service to stop (connectplugin.v1.PluginControl/Shutdown).
    public func shutdownRemote(reason: String = "the host asked", timeoutMs: Int64 = 5000) throws {
        guard let c = cond.withLock({ client }) else { throw ConnectError.local(.state, "plugin \(name) is not started") }
        _ = try c.unary("/connectplugin.v1.PluginControl/Shutdown", request: { var r = ShutdownRequest(); r.reason = reason; return r }().serialized(), timeoutMs: timeoutMs)
    }

    /// The connection to the plugin's services (shared by everything dispensed from it).
    public func dispense(_ plugin: String) throws -> RPCClient {
        try cond.withLock {
            guard let c = dispensed, let l = line else {
                throw ConnectError.local(.state, "plugin \(name) is not started; call start() first")
            }
            if let e = exit, !restarting { throw ConnectError(.unavailable, "plugin \(name) \(e)") }
            let names = config.versionedPlugins[l.appVersion] ?? []
            guard names.contains(plugin) else {
                throw ConnectError.local(.invalidArgument, "plugin \"\(plugin)\" is not in this host's plugin set for version \(l.appVersion) "
                    + "(it has \(names.sorted()))")
            }
            return c
        }
    }

    /// go-plugin's Ping: grpc.health.v1.Health/Check for "plugin".
    public func ping(timeoutMs: Int64 = 10_000) throws {
        guard let c = cond.withLock({ client }) else { throw ConnectError.local(.state, "plugin \(name) is not started") }
        let r = try c.unary("/grpc.health.v1.Health/Check", request: HealthCheckRequest(service: "plugin").serialized(),
                            timeoutMs: timeoutMs)
        let s = try HealthCheckResponse(serialized: r.message).status
        if s != .serving { throw ConnectError(.unavailable, "plugin \(name) is \(s.map { "\($0)" } ?? "in an unknown state")") }
    }

    /// The plugin's own description: connect-plugin-go's `connectplugin.v1.PluginIdentity/GetPluginInfo`
    /// (its id, version and metadata; a connectplugin plugin reports its first plugin's name and
    /// version, `app_protocol_version` and `runtime`). A go-plugin plugin does not serve it: the
    /// error is `unimplemented` and says so (its negotiated version and pid are on this client).
    public func info(timeoutMs: Int64 = 10_000) throws -> GetPluginInfoResponse {
        guard let c = cond.withLock({ client }) else { throw ConnectError.local(.state, "plugin \(name) is not started") }
        let r: UnaryResponse
        do {
            r = try c.unary("/connectplugin.v1.PluginIdentity/GetPluginInfo", request: EmptyMessage().serialized(),
                            timeoutMs: timeoutMs)
        } catch let e as ConnectError where e.kind == .rpc && e.code == .unimplemented {
            throw ConnectError(.unimplemented, "plugin \(name) does not serve connectplugin.v1.PluginIdentity/GetPluginInfo "
                + "(go-plugin plugins do not); its negotiated version and pid are known without it")
        }
        return try GetPluginInfoResponse(serialized: r.message)
    }

    /// Stops the plugin: Shutdown, grace, SIGTERM, grace, SIGKILL; waits until it ended. Idempotent.
    public func kill() {
        if let r = config.reattach {
            if cond.withLock({ killed }) { return }
            killReattached(r)
            return
        }
        if config.url != nil {
            let c: RPCClient? = cond.withLock {
                killed = true
                defer { client = nil }
                return client
            }
            c?.close()
            return
        }
        let (c, sc, p, first): (RPCClient?, RPCClient?, ChildProcess?, Bool) = cond.withLock {
            let f = !killed
            killed = true
            cond.broadcast()  // a restart loop waiting out its backoff stops
            return (client, stdioClient, process, f)
        }
        guard first else {
            _ = waitExit(untilNs: UInt64.max)
            return
        }
        // Shutdown goes on the stdio connection when there is one: it is never handed out, so a
        // caller that closed the dispensed client still gets a graceful stop.
        if let control = sc ?? c, exitStatus == nil {
            _ = try? control.unary("/plugin.GRPCController/Shutdown", request: [], timeoutMs: max(1, config.killGraceMs))
        }
        let grace = UInt64(max(0, config.killGraceMs)) &* 1_000_000
        if let p, !waitExit(untilNs: monotonicNowNs() &+ grace) {
            log(LogRecord(level: .warn, message: "plugin did not exit after Shutdown; sending SIGTERM"))
            _ = p.sendSignal(SIGTERM)
            if !waitExit(untilNs: monotonicNowNs() &+ grace) {
                log(LogRecord(level: .warn, message: "plugin failed to exit gracefully; sending SIGKILL"))
                _ = p.sendSignal(SIGKILL)
                _ = waitExit(untilNs: UInt64.max)
            }
        }
        c?.close()
        sc?.close()
        PluginRegistry.shared.remove(self)
        // The exit hooks run on the I/O thread after the exit is recorded: return after them.
        let until = monotonicNowNs() &+ 5_000_000_000
        cond.withLock {
            while (exit != nil || restarting) && !exitNotified {
                if !cond.wait(untilNs: until) { break }
            }
        }
    }

    /// Managed mode: kills every plugin this process started and has not stopped (each as `kill`,
    /// in parallel), and returns when all ended. Safe to call more than once and from any thread.
    public static func cleanupAll() {
        let all = PluginRegistry.shared.all()
        if all.isEmpty { return }
        let done = ConditionLock()
        var left = all.count
        for p in all {
            startThread(name: "cp-plugin-cleanup") {
                p.kill()
                done.withLock {
                    left -= 1
                    done.broadcast()
                }
            }
        }
        done.withLock { while left > 0 { done.wait() } }
    }

    /// A call that failed in the transport: when the plugin died (or dies within a moment, as the
    /// connection's end can be seen before the exit), the error names the plugin and its status.
    func explainTransportFailure(_ e: ConnectError) -> ConnectError {
        switch e.code {
        case .unavailable, .canceled, .internal, .unknown: break
        default: return e
        }
        let until = monotonicNowNs() &+ 1_000_000_000
        let (status, wasKilled): (ProcessExitStatus?, Bool) = cond.withLock {
            while exit == nil && process != nil {
                if !cond.wait(untilNs: until) { break }
            }
            return (exit, killed)
        }
        guard let status else { return e }
        let why = wasKilled ? "was stopped by the host" : "\(status)"
        return ConnectError(.unavailable, "plugin \(name) (pid \(pid ?? 0)) \(why) during the call (\(e.message))")
    }

    private func checkChecksum(_ path: String, _ want: String) throws {
        let expected = want.lowercased()
        guard expected.utf8.count == 64, expected.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw ConnectError.local(.invalidArgument, "the expected SHA-256 of plugin \(path) must be 64 hex digits (got \"\(want)\")")
        }
        let (hex, why) = SHA256.fileHex(path)
        guard let actual = hex else {
            throw ConnectError.local(.invalidArgument, "cannot read plugin binary \(path) to check its SHA-256: \(why)")
        }
        do {
            if actual != expected {
                throw ConnectError(.permissionDenied, "plugin binary \(path) failed its checksum: SHA-256 expected \(expected), "
                    + "actual \(actual); it was not started (rebuilt or replaced? update the expected digest only if you trust the new binary)")
            }
        }
    }

    private func hardKill() {
        let p: ChildProcess? = cond.withLock {
            discarding = true
            return process
        }
        _ = p?.sendSignal(SIGKILL)
        _ = waitExit(untilNs: monotonicNowNs() &+ 10_000_000_000)
    }

    /// Waits for the exit; false at the deadline.
    @discardableResult
    public func waitExit(untilNs: UInt64) -> Bool {
        cond.withLock {
            while exit == nil {
                if untilNs == UInt64.max {
                    cond.wait()
                } else if !cond.wait(untilNs: untilNs) {
                    return exit != nil
                }
            }
            return true
        }
    }

    // MARK: Loop callbacks

    private func stdoutBytes(_ b: UnsafeRawBufferPointer) {
        var skipped: [LogRecord] = []
        defer { for r in skipped { log(r) } }
        cond.withLock {
            if line != nil || lineError != nil { return }  // later stdout is discarded, as go-plugin does
            stdoutBuffer.append(contentsOf: b)
            while let nl = stdoutBuffer.firstIndex(of: 0x0A) {
                let text = String(decoding: stdoutBuffer[..<nl], as: UTF8.self)
                stdoutBuffer.removeSubrange(...nl)
                switch HandshakeLine.parse(text) {
                case .success(let l):
                    line = l
                    cond.broadcast()
                    return
                case .failure(let e):
                    if case .unrecognized = e, junk.count < config.maxJunkLines {
                        junk.append(text)
                        skipped.append(LogRecord(level: .warn, message: "skipping a line the plugin printed on stdout before its handshake",
                                                 fields: [("line", HandshakeLine.preview(text))]))
                        continue
                    }
                    if case .unrecognized = e {
                        lineError = .unrecognized(line: HandshakeLine.preview(text)
                            + " (and \(junk.count) other lines before it; a plugin must print its handshake line first)")
                    } else {
                        lineError = e
                    }
                    cond.broadcast()
                    return
                }
            }
            if stdoutBuffer.count > 64 << 10 {
                lineError = .unrecognized(line: HandshakeLine.preview(String(decoding: stdoutBuffer.prefix(120), as: UTF8.self)))
                stdoutBuffer = []
                cond.broadcast()
            }
        }
    }

    private func stderrBytes(_ b: UnsafeRawBufferPointer) {
        var records: [LogRecord] = []
        cond.withLock {
            stderrBuffer.append(contentsOf: b)
            while let nl = stderrBuffer.firstIndex(of: 0x0A) {
                records.append(stderrLine(String(decoding: stderrBuffer[..<nl], as: UTF8.self)))
                stderrBuffer.removeSubrange(...nl)
            }
            // go-plugin's PluginLogBufferSize: a longer line is cut and logged.
            if stderrBuffer.count > 64 << 10 {
                records.append(stderrLine(String(decoding: stderrBuffer, as: UTF8.self)))
                stderrBuffer = []
            }
        }
        for r in records { log(r) }
    }

    private func stderrEnded() {
        let r: LogRecord? = cond.withLock {
            defer {
                stderrClosed = true
                cond.broadcast()
            }
            if stderrBuffer.isEmpty { return nil }
            defer { stderrBuffer = [] }
            return stderrLine(String(decoding: stderrBuffer, as: UTF8.self))
        }
        if let r { log(r) }
    }

    /// Locked.
    private func stderrLine(_ s: String) -> LogRecord {
        lastStderr.append(s)
        if lastStderr.count > 20 { lastStderr.removeFirst(lastStderr.count - 20) }
        return logParser.parse(s)
    }

    private func exited(_ status: ProcessExitStatus) {
        let (expected, restart, wasKilled, failedStart): (Bool, Bool, Bool, Bool) = cond.withLock {
            exit = status
            cond.broadcast()
            let expected = killed || discarding
            // Restart only a plugin that was up (a failed start is the caller's error) and not stopped.
            let r = !expected && line != nil && client != nil && !restarting
                && config.restart.map { restartCount < $0.maxRestarts } == true
            if r { restarting = true }
            return (expected, r, killed || (discarding && !restarting), discarding && !killed)
        }
        if wasKilled { PluginRegistry.shared.remove(self) }
        log(LogRecord(level: expected ? .debug : .warn, message: "plugin process exited", fields: [("status", "\(status)")]))
        if failedStart { return }  // a failed (re)launch: its caller reports it
        if restart {
            startThread(name: "cp-plugin-restart") { [self] in restartLoop() }
            return
        }
        notifyExit(status)
    }

    /// The plugin ended for good: the exit hooks run once.
    private func notifyExit(_ status: ProcessExitStatus) {
        let hooks: [@Sendable (ProcessExitStatus) -> Void] = cond.withLock {
            if exitNotified { return [] }
            let h = exitHooks
            exitHooks = []
            return h
        }
        for h in hooks { h(status) }
        cond.withLock {
            exitNotified = true
            cond.broadcast()
        }
    }

    /// Relaunches with exponential backoff until a launch succeeds, the limit is reached or the
    /// host kills the plugin.
    private func restartLoop() {
        guard let policy = config.restart else { return }
        var backoff = max(1, policy.initialBackoffMs)
        while true {
            let stop: Bool = cond.withLock {
                let until = monotonicNowNs() &+ UInt64(backoff) &* 1_000_000
                while !killed {
                    if !cond.wait(untilNs: until) { break }
                }
                if killed || restartCount >= policy.maxRestarts { return true }
                restartCount += 1
                return false
            }
            if stop { break }
            let n = restarts
            log(LogRecord(level: .warn, message: "restarting the plugin", fields: [("restart", "\(n)"), ("of", "\(policy.maxRestarts)")]))
            do {
                try launch()
                let keep: Bool = cond.withLock {
                    if killed { return false }
                    restarting = false
                    cond.broadcast()
                    return true
                }
                if keep {
                    log(LogRecord(level: .info, message: "plugin restarted", fields: [("pid", "\(pid ?? 0)")]))
                    return
                }
                hardKill()
                break
            } catch {
                log(LogRecord(level: .error, message: "restarting the plugin failed", fields: [("error", "\(error)")]))
            }
            backoff = min(max(1, policy.maxBackoffMs), backoff &* 2)
        }
        let last: ProcessExitStatus = cond.withLock {
            restarting = false
            cond.broadcast()
            return exit ?? .unknown("not restarted")
        }
        notifyExit(last)
    }

    private func drainStdio(_ c: RPCClient) {
        guard let s = try? c.stream("/plugin.GRPCStdio/StreamStdio", kind: .serverStream) else { return }
        do {
            try s.send([])
            s.closeSend()
            while let m = try s.receive() {
                let d = try StdioData(serialized: m)
                if let sink = config.stdio, let ch = d.channel, ch != .invalid {
                    sink(ch, d.data)
                } else if d.channel == .stderr || d.channel == .stdout {
                    log(LogRecord(level: .debug, message: String(decoding: d.data, as: UTF8.self),
                                  fields: [("stdio", d.channel == .stdout ? "stdout" : "stderr")]))
                }
            }
        } catch let e as ConnectError where e.code == .unimplemented {
            log(LogRecord(level: .debug, message: "the plugin has no plugin.GRPCStdio service (go-plugin before 1.1); its stdout is not forwarded"))
        } catch {}
    }

    private func checkExecutable(_ path: String) throws {
        if access(path, F_OK) != 0 {
            throw ConnectError.local(.invalidArgument, "plugin binary \(path) not found; check the path (relative paths are relative to the host's working directory)")
        }
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            throw ConnectError.local(.invalidArgument, "plugin path \(path) is a directory, not a binary")
        }
        if access(path, X_OK) != 0 {
            throw ConnectError.local(.invalidArgument, "plugin binary \(path) is not executable; chmod +x it")
        }
    }

    private func explainSpawnFailure(_ path: String, _ e: IOError) -> String {
        let m = e.message
        if m.contains("Exec format error") || m.contains("ENOEXEC") {
            return "plugin binary \(path) cannot run on this machine (wrong architecture, or not an executable): \(m)"
        }
        return "cannot start plugin \(path): \(m)"
    }
}

/// Managed mode's registry: the plugins this process started and has not stopped.
final class PluginRegistry: @unchecked Sendable {
    static let shared = PluginRegistry()
    private let lock = Lock()
    private var plugins: [ObjectIdentifier: PluginClient] = [:]

    func add(_ p: PluginClient) { lock.withLock { plugins[ObjectIdentifier(p)] = p } }
    func remove(_ p: PluginClient) { _ = lock.withLock { plugins.removeValue(forKey: ObjectIdentifier(p)) } }
    func all() -> [PluginClient] { lock.withLock { Array(plugins.values) } }
}

/// The one thread that spawns plugins. Linux sends PR_SET_PDEATHSIG when the thread that forked
/// the child exits, so plugins are spawned here, from a thread that lives as long as the process,
/// never from a caller's thread (a Go goroutine's thread or a Python thread may end any time).
final class PluginSpawner: @unchecked Sendable {
    static let shared = PluginSpawner()
    private let cond = ConditionLock()
    private var jobs: [() -> Void] = []
    private var started = false

    /// Runs `body` on the spawner thread and returns its result.
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let done = ConditionLock()
        var result: Result<T, Error>?
        let job = {
            let r = Result { try body() }
            done.withLock {
                result = r
                done.broadcast()
            }
        }
        cond.withLock {
            if !started {
                started = true
                startThread(name: "cp-plugin-spawn") { [self] in loop() }
            }
            jobs.append(job)
            cond.broadcast()
        }
        let r: Result<T, Error> = done.withLock {
            while result == nil { done.wait() }
            return result ?? .failure(ConnectError.local(.state, "the plugin spawner lost a result"))
        }
        return try r.get()
    }

    private func loop() {
        while true {
            let job: () -> Void = cond.withLock {
                while jobs.isEmpty { cond.wait() }
                return jobs.removeFirst()
            }
            job()
        }
    }
}

/// The transport of what `dispense` returns: every call goes to the plugin's current connection, so
/// dispensed clients keep working after a restart. Closing it leaves the connection (kill closes it).
final class PluginTransport: ClientTransport, @unchecked Sendable {
    private weak var plugin: PluginClient?
    private let fallback: any ClientTransport

    init(_ plugin: PluginClient, initial: any ClientTransport) {
        self.plugin = plugin
        fallback = initial
    }

    private var current: any ClientTransport { plugin?.currentClient?.transport ?? fallback }

    func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                 completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        current.execute(method: method, path: path, headers: headers, body: body, timeoutNs: timeoutNs, completion: completion)
    }

    func stream(method: String, path: String, headers: HTTPHeaders, timeoutNs: UInt64?) -> HTTPClientCall {
        current.stream(method: method, path: path, headers: headers, timeoutNs: timeoutNs)
    }

    func stream(method: String, path: String, headers: HTTPHeaders, body: [UInt8], endStream: Bool,
                timeoutNs: UInt64?) -> HTTPClientCall {
        current.stream(method: method, path: path, headers: headers, body: body, endStream: endStream, timeoutNs: timeoutNs)
    }

    func close() {}
}
