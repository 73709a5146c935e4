// The library version. It is written in one place, CONNECTPLUGIN_VERSION in include/connectplugin.h;
// Swift, the C exports and CMake read it from there.
import CConnectPluginABI

/// "MAJOR.MINOR.PATCH", as CONNECTPLUGIN_VERSION in include/connectplugin.h.
public let libraryVersion: String = CONNECTPLUGIN_VERSION
