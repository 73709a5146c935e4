// The I/O core's error type, `IOError`, known as `HTTPError` in the transport and RPC layers.
import CConnectPluginPosix

/// An I/O or transport-level error. `HTTPError` is the same type under the name the transport and RPC
/// layers use.
public typealias HTTPError = IOError

/// An I/O or transport-level error.
public struct IOError: Error, CustomStringConvertible, Sendable {
    /// `refused`: the peer did not process the request (HTTP/2 REFUSED_STREAM or GOAWAY); safe to retry.
    /// `tls`: the TLS handshake or certificate verification failed. `limit`: the peer exceeded a limit
    /// (HTTP/2 ENHANCE_YOUR_CALM).
    public enum Kind: Sendable { case io, resource, protocolError, closed, timeout, invalidArgument, tooLarge, canceled, refused, tls, limit, permission }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }

    /// The error of a failed system call that returned `negErr` (a negated errno).
    public static func errno(_ what: String, _ negErr: Int) -> HTTPError {
        HTTPError(.io, "\(what): \(String(cString: cp_strerror(Int32(truncatingIfNeeded: -negErr))))")
    }
}
