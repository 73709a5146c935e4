#include "CConnectPluginZlib.h"
