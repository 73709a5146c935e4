//go:build kvplugin

package main

// pluginBuild: this is kv-plugin-go, the same handlers served as a go-plugin compatible plugin
// when launched without --listen.
const pluginBuild = true
