module github.com/connectplugin/connectplugin/bindings/go

go 1.19
