// The I/O core this module stands on (event loops, thread pool, locks and promises, sockets, and the
// error type `HTTPError` = `IOError`), re-exported so that the layers above see one transport API.
@_exported import ConnectPluginIO
