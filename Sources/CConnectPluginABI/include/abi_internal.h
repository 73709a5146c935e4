// Internal helpers of the C ABI target; not part of the public header, not exported by the library.
#ifndef CONNECTPLUGIN_ABI_INTERNAL_H
#define CONNECTPLUGIN_ABI_INTERNAL_H
/// CONNECTPLUGIN_VERSION as a static C string.
const char *cp_abi_version_string(void);
#endif
