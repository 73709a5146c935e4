// The Connect / gRPC status codes (wire-stable numbers) and their HTTP mappings.

/// A Connect (and gRPC) status code. Raw values are the wire numbers.
public enum Code: Int32, CaseIterable, Sendable {
    case ok = 0
    case canceled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// A code from a wire number; anything out of range is `.unknown` (never traps).
    public init(wire: Int64) {
        if wire >= 0, wire <= 16, let c = Code(rawValue: Int32(truncatingIfNeeded: wire)) { self = c } else { self = .unknown }
    }

    /// The Connect wire name: "canceled", "invalid_argument", … ("ok" for `.ok`).
    public var name: String {
        switch self {
        case .ok: return "ok"
        case .canceled: return "canceled"
        case .unknown: return "unknown"
        case .invalidArgument: return "invalid_argument"
        case .deadlineExceeded: return "deadline_exceeded"
        case .notFound: return "not_found"
        case .alreadyExists: return "already_exists"
        case .permissionDenied: return "permission_denied"
        case .resourceExhausted: return "resource_exhausted"
        case .failedPrecondition: return "failed_precondition"
        case .aborted: return "aborted"
        case .outOfRange: return "out_of_range"
        case .unimplemented: return "unimplemented"
        case .internal: return "internal"
        case .unavailable: return "unavailable"
        case .dataLoss: return "data_loss"
        case .unauthenticated: return "unauthenticated"
        }
    }

    /// Parses a Connect wire name; nil if unknown.
    public init?(name: String) {
        for c in Code.allCases where c.name == name && c != .ok { self = c; return }
        return nil
    }

    /// The HTTP status a Connect unary error with this code is sent with.
    public var httpStatus: Int {
        switch self {
        case .ok: return 200
        case .canceled: return 499
        case .unknown: return 500
        case .invalidArgument: return 400
        case .deadlineExceeded: return 504
        case .notFound: return 404
        case .alreadyExists: return 409
        case .permissionDenied: return 403
        case .resourceExhausted: return 429
        case .failedPrecondition: return 400
        case .aborted: return 409
        case .outOfRange: return 400
        case .unimplemented: return 501
        case .internal: return 500
        case .unavailable: return 503
        case .dataLoss: return 500
        case .unauthenticated: return 401
        }
    }

    /// The code implied by an HTTP status when the response carries no RPC code (protocol digest §2.2).
    public static func fromHTTPStatus(_ status: Int) -> Code {
        switch status {
        case 400: return .internal
        case 401: return .unauthenticated
        case 403: return .permissionDenied
        case 404: return .unimplemented
        case 429, 502, 503, 504: return .unavailable
        default: return .unknown
        }
    }
}
