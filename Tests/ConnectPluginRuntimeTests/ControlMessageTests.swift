// The control-plane messages against bytes protoc-generated code produces (the field numbers of
// plugin-wire.md §1.6 and §2.11), and bad input.
import Testing
import ConnectPluginRPC
@testable import ConnectPluginRuntime

@Suite("Control messages") struct ControlMessageTests {
    @Test func knownBytes() throws {
        #expect(HealthCheckRequest(service: "plugin").serialized() == [0x0A, 6] + Array("plugin".utf8))
        #expect(HealthCheckResponse(status: .serving).serialized() == [0x08, 0x01])
        #expect(EmptyMessage().serialized() == [])
        #expect(StdioData(channel: .stderr, data: Array("hi".utf8)).serialized() == [0x08, 0x02, 0x12, 0x02, 0x68, 0x69])
        var ci = ConnInfo()
        ci.serviceID = 3
        ci.network = "unix"
        ci.address = "/s"
        #expect(ci.serialized() == [0x08, 0x03, 0x12, 0x04] + Array("unix".utf8) + [0x1A, 0x02] + Array("/s".utf8))
        var sd = ShutdownRequest()
        sd.gracePeriodSeconds = -1
        // int32 negatives are 10-byte sign-extended varints.
        #expect(sd.serialized() == [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(try ShutdownRequest(serialized: sd.serialized()).gracePeriodSeconds == -1)
    }

    @Test func roundTrips() throws {
        var h = HandshakeRequest()
        h.coreProtocolVersion = 1
        h.appProtocolVersion = 2
        h.magicCookieKey = "KV_PLUGIN"
        h.magicCookieValue = "connectplugin-kv"
        h.requestedPlugins = ["kv", ""]
        h.clientMetadata = [("a", "1"), ("", "")]
        #expect(try HandshakeRequest(serialized: h.serialized()) == h)
        var resp = HandshakeResponse()
        resp.coreProtocolVersion = 1
        resp.appProtocolVersion = 1
        resp.plugins = [PluginInfo(name: "kv", version: "1.0.0", servicePath: "/kv.v1.KVService/"), PluginInfo()]
        resp.serverMetadata = [("server_version", "0.2.0")]
        #expect(try HandshakeResponse(serialized: resp.serialized()) == resp)
        var g = GetHealthResponse(state: .degraded, reason: "cache cold")
        g.unavailableDependencies = ["db"]
        #expect(try GetHealthResponse(serialized: g.serialized()) == g)
        var ci = ConnInfo()
        ci.serviceID = 7
        var k = ConnInfo.Knock()
        k.knock = true
        k.ack = true
        k.error = "no"
        ci.knock = k
        #expect(try ConnInfo(serialized: ci.serialized()) == ci)
        var empty = ConnInfo()
        empty.knock = ConnInfo.Knock()
        #expect(try ConnInfo(serialized: empty.serialized()).knock == ConnInfo.Knock())
    }

    @Test func unknownFieldsAndEnumValuesAreKept() throws {
        // field 9 (varint), field 10 (bytes), then status 7 (an enum value this version does not know).
        let bytes: [UInt8] = [0x48, 0x05, 0x52, 0x01, 0x00, 0x08, 0x07]
        let r = try HealthCheckResponse(serialized: bytes)
        #expect(r.statusValue == 7 && r.status == nil)
    }

    @Test func badInputThrows() {
        #expect(throws: ProtoWireError.self) { _ = try HealthCheckRequest(serialized: [0x0A, 0x05, 0x61]) }
        #expect(throws: ProtoWireError.self) { _ = try HealthCheckRequest(serialized: [0x08, 0x01]) }  // wrong wire type
        #expect(throws: ProtoWireError.self) { _ = try HealthCheckRequest(serialized: [0x0A, 0x01, 0xFF]) }  // not UTF-8
        #expect(throws: ProtoWireError.self) { _ = try StdioData(serialized: [0x08]) }
        #expect(throws: ProtoWireError.self) { _ = try ConnInfo(serialized: [0x22, 0x02, 0x08]) }
    }
}
