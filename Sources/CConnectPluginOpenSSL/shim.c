#include "CConnectPluginOpenSSL.h"
