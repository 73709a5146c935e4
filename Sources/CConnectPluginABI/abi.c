// Makes include/connectplugin.h a module (CConnectPluginABI) so that the Swift exports can be checked
// against the header's prototypes at compile time. No code lives here.
#include "connectplugin.h"
