// Package pluginpb is the generated Go code of plugin.proto, the gRPC
// contract between imapproxy and its plugins. The generated files are
// committed; only changing plugin.proto needs the tools:
//
//	apt-get install protobuf-compiler   # protoc 3.21.12
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./plugins/proto
package pluginpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugin.proto
