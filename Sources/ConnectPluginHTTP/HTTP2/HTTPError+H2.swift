// HTTP/2-specific constructors of the transport error.

extension HTTPError {
    /// The error for an HTTP/2 RST_STREAM received with `code` (protocol digest §6.4).
    public static func fromH2Reset(_ code: UInt32, _ peer: String) -> HTTPError {
        let what = "\(peer) reset the stream (HTTP/2 error code \(code))"
        switch code {
        case 7: return HTTPError(.refused, "\(peer) refused the stream; the request was not processed")
        case 8: return HTTPError(.canceled, what)
        case 11: return HTTPError(.limit, what + ": enhance your calm")
        case 12: return HTTPError(.permission, what + ": inadequate security")
        default: return HTTPError(.protocolError, what)
        }
    }
}
