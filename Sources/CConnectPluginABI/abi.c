// Makes include/connectplugin.h a module (CConnectPluginABI) so that the Swift exports can be checked
// against the header's prototypes at compile time, and hands the header's version string to Swift
// as a static C string (connectplugin_version returns it).
#include "connectplugin.h"
#include "abi_internal.h"

const char *cp_abi_version_string(void) { return CONNECTPLUGIN_VERSION; }
