package connectplugin

/*
#include "connectplugin.h"
*/
import "C"

import "sync"

// Header constants this package was compiled against.
const (
	HeaderVersion    = C.CONNECTPLUGIN_VERSION
	HeaderABIVersion = C.CONNECTPLUGIN_ABI_VERSION
)

// Version returns the loaded library's version string, e.g. "0.2.0".
func Version() string { return C.GoString(C.connectplugin_version()) }

// VersionNum returns the loaded library's version as 0xMMmmpp.
func VersionNum() uint32 { return uint32(C.connectplugin_version_num()) }

// ABIVersion returns the ABI version the loaded library implements.
func ABIVersion() uint32 { return uint32(C.connectplugin_abi_version()) }

var (
	abiOnce sync.Once
	abiErr  error
)

// checkABI fails when the loaded library implements another ABI than the header this package was
// compiled against. NewServer and NewClient call it.
func checkABI() error {
	abiOnce.Do(func() {
		if got := ABIVersion(); got != HeaderABIVersion {
			abiErr = newLocalError(StatusUnsupported, CodeFailedPrecondition,
				"libconnectplugin ABI version "+itoa(int(got))+" does not match the header's "+itoa(HeaderABIVersion))
		}
	})
	return abiErr
}
