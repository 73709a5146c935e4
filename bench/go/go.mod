module github.com/connectplugin/connectplugin/bench/go

go 1.19

require github.com/connectplugin/connectplugin/bindings/go v0.0.0-00010101000000-000000000000

replace github.com/connectplugin/connectplugin/bindings/go => ../../bindings/go
