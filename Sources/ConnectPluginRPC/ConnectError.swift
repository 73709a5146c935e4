// The one error type of connectplugin: a Connect code, a message, details and metadata, plus the
// local kind of failure so that the C ABI can return the matching connectplugin_status.

/// A google.protobuf.Any carried as an error detail: the fully qualified type name and the bytes.
public struct ErrorDetail: Equatable, Sendable {
    /// The fully qualified message name, without the "type.googleapis.com/" prefix.
    public var type: String
    /// The serialized protobuf message.
    public var value: [UInt8]

    public init(type: String, value: [UInt8]) {
        self.type = type
        self.value = value
    }
}

/// An error from connectplugin. `kind` says what failed locally; `.rpc` means the RPC itself failed
/// with `code` (from the peer, or synthesised: deadline, unreachable server, …).
public struct ConnectError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What kind of failure; the raw values are the C ABI's connectplugin_status numbers.
    public enum Kind: Int32, Sendable {
        case invalidArgument = -1
        case resource = -2
        case closed = -3
        case io = -4
        case state = -5
        case rpc = -6
        case unsupported = -7
    }

    public var kind: Kind
    public var code: Code
    public var message: String
    public var details: [ErrorDetail]
    public var metadata: Metadata

    public init(_ code: Code, _ message: String, details: [ErrorDetail] = [], metadata: Metadata = Metadata(), kind: Kind = .rpc) {
        self.kind = kind
        self.code = code
        self.message = message
        self.details = details
        self.metadata = metadata
    }

    /// A local failure of the given kind, with the closest Connect code.
    public static func local(_ kind: Kind, _ message: String) -> ConnectError {
        let code: Code
        switch kind {
        case .invalidArgument: code = .invalidArgument
        case .resource: code = .resourceExhausted
        case .closed: code = .canceled
        case .io: code = .unavailable
        case .state: code = .failedPrecondition
        case .rpc: code = .unknown
        case .unsupported: code = .unimplemented
        }
        return ConnectError(code, message, kind: kind)
    }

    public var description: String { message.isEmpty ? code.name : "\(code.name): \(message)" }
}
