//go:build !kvplugin

package main

// pluginBuild is false for kv-server-go; examples/go/build.sh builds kv-plugin-go with -tags kvplugin.
const pluginBuild = false
