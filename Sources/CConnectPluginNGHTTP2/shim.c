#include "CConnectPluginNGHTTP2.h"
