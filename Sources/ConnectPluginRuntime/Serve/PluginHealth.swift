// The health a plugin reports, in both models it is asked about:
// - go-plugin's `grpc.health.v1` statuses, per service name: `""` (the server), `"plugin"` (what
//   go-plugin's Ping checks) and one per plugin name;
// - connect-plugin-go's three-state health (healthy, degraded, unhealthy), settable by the plugin at
//   any time, with a reason.
// Healthy and degraded both answer SERVING (a degraded plugin still takes traffic, as in
// connect-plugin-go's router); unhealthy answers NOT_SERVING; after shutdown everything is NOT_SERVING.
// Watchers block on a generation counter that every change bumps.

import ConnectPluginIO
import ConnectPluginRPC

public final class PluginHealth: @unchecked Sendable {
    private let cond = ConditionLock()
    private var state: HealthState = .healthy
    private var reason = ""
    private var names: Set<String>
    private var stopped = false
    private var generation: UInt64 = 0

    /// The services answered: `""`, `"plugin"` and `pluginNames`.
    public init(pluginNames: [String]) {
        names = Set(pluginNames + ["", "plugin"])
    }

    /// Sets the plugin's health (wakes every watcher).
    public func set(_ newState: HealthState, reason newReason: String = "") {
        cond.withLock {
            state = newState == .unspecified ? .healthy : newState
            reason = newReason
            generation &+= 1
            cond.broadcast()
        }
    }

    /// Marks everything NOT_SERVING for good (the plugin is stopping) and wakes watchers.
    public func shutdown() {
        cond.withLock {
            stopped = true
            generation &+= 1
            cond.broadcast()
        }
    }

    public var current: (state: HealthState, reason: String) {
        cond.withLock { (stopped ? .unhealthy : state, stopped ? "shutting down" : reason) }
    }

    /// The `grpc.health.v1` status of `service`; nil for a service this plugin does not have.
    public func servingStatus(_ service: String) -> ServingStatus? {
        cond.withLock { servingStatusLocked(service) }
    }

    private func servingStatusLocked(_ service: String) -> ServingStatus? {
        guard names.contains(service) else { return nil }
        if stopped { return .notServing }
        return state == .unhealthy ? .notServing : .serving
    }

    var changeCount: UInt64 { cond.withLock { generation } }

    /// Waits until the generation moves past `seen` or `untilNs` passes; returns the generation.
    func waitForChange(after seen: UInt64, untilNs: UInt64) -> UInt64 {
        cond.lock()
        defer { cond.unlock() }
        while generation == seen {
            if !cond.wait(untilNs: untilNs) { break }
        }
        return generation
    }

    /// Wakes watchers without a change (a watcher's call ended).
    func poke() { cond.withLock { cond.broadcast() } }
}
