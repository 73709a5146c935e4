/*
 * bench_server.c — the server side of the benchmarks, in a process of its own so that its CPU time
 * and context switches can be read from /proc apart from the client's.
 *
 *   bench_server cp  [--unix PATH] [--tcp HOST:PORT] [--threads N] [--inline] [--stdin]
 *       a connectplugin server with one unary procedure, /bench.v1.BenchService/Unary, that answers
 *       a 64-byte request with a 64-byte response (any protocol: Connect, gRPC, gRPC-Web); with
 *       --inline the handler is registered with connectplugin_server_register_unary_inline (it runs
 *       on the I/O thread: no hand-off to a handler thread);
 *   bench_server [plugin]
 *       the same handler served as a go-plugin compatible plugin (connectplugin_plugin_serve: cookie
 *       BENCH_PLUGIN=connectplugin-bench, app protocol version 1, plugin "bench"; Unix socket), for
 *       the plugin part of bench/run.sh (bench/plugins.py);
 *   bench_server raw [--unix PATH] [--tcp HOST:PORT] [--stdin]
 *       the raw baseline: an echo of 64-byte messages, one thread per connection doing blocking
 *       read/write (what the ping-pong of platform-notes.md measures).
 *
 * Messages are google.protobuf.BytesValue{value: 62 bytes} (0a 3e + 62 bytes = 64 bytes), so grpc-go,
 * grpcio and h2load can send the same bytes. Prints "unix PATH" and/or "tcp HOST:PORT", then "ready"
 * (one line each, flushed); runs until SIGTERM/SIGINT, or with --stdin until stdin reaches EOF.
 */
#define _GNU_SOURCE

#include <connectplugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench_io.h"

#define MSG_SIZE 64
#define PROCEDURE "/bench.v1.BenchService/Unary"

static uint8_t g_response[MSG_SIZE];

static void die(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "bench_server: %s: %s (%s): %s\n", what, connectplugin_status_string(status),
            connectplugin_code_name(connectplugin_error_code(error)), connectplugin_error_message(error));
    connectplugin_error_free(error);
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "bench_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void handle_unary(connectplugin_call *call, void *user_data) {
    (void)user_data;
    size_t len = 0;
    connectplugin_call_request(call, &len);
    connectplugin_error *error = NULL;
    connectplugin_status status =
        len == MSG_SIZE ? connectplugin_call_respond(call, g_response, sizeof g_response, &error)
                        : connectplugin_call_fail(call, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, "want 64 bytes", &error);
    if (status != CONNECTPLUGIN_OK) {
        fprintf(stderr, "bench_server: handler: %s\n", connectplugin_error_message(error));
        connectplugin_error_free(error);
    }
}

/* ---- raw echo */

static void *echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on Unix sockets */
    uint8_t buf[MSG_SIZE];
    while (read_full(fd, buf, sizeof buf) == 0 && write_full(fd, buf, sizeof buf) == 0) {
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg) {
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
            return NULL;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

static int raw_listen_unix(const char *path) {
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) die_errno("socket");
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
    unlink(path);
    if (bind(l, (struct sockaddr *)&su, sizeof su) != 0 || listen(l, 128) != 0) die_errno("bind/listen unix");
    return l;
}

static int raw_listen_tcp(const char *hostport, char *out, size_t outlen) {
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        fprintf(stderr, "bench_server: bad --tcp %s\n", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) die_errno("socket");
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in si = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &si.sin_addr) != 1) {
        fprintf(stderr, "bench_server: bad host %s\n", host);
        exit(2);
    }
    socklen_t sl = sizeof si;
    if (bind(l, (struct sockaddr *)&si, sl) != 0 || listen(l, 1024) != 0) die_errno("bind/listen tcp");
    if (getsockname(l, (struct sockaddr *)&si, &sl) != 0) die_errno("getsockname");
    snprintf(out, outlen, "%s:%d", host, ntohs(si.sin_port));
    return l;
}

static void *stdin_watch(void *arg) {
    (void)arg;
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    kill(getpid(), SIGTERM);
    return NULL;
}

static int serve_plugin(void) {
    g_response[0] = 0x0a;
    g_response[1] = MSG_SIZE - 2;
    memset(g_response + 2, 'r', MSG_SIZE - 2);
    connectplugin_error *error = NULL;
    connectplugin_server *server = NULL;
    connectplugin_plugin_config *config = NULL;
    connectplugin_status status = connectplugin_server_new(NULL, &server, &error);
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_server_register_unary(server, PROCEDURE, handle_unary, NULL, NULL, &error);
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_plugin_config_new("BENCH_PLUGIN", "connectplugin-bench", &config, &error);
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_plugin_config_add_plugin(config, 1, "bench", NULL, "/bench.v1.BenchService/", &error);
    if (status != CONNECTPLUGIN_OK) die("plugin setup", status, error);
    int rc = connectplugin_plugin_serve(server, config);
    connectplugin_plugin_config_free(config);
    connectplugin_server_free(server);
    return rc;
}

int main(int argc, char **argv) {
    /* No arguments: launched by a plugin host (bench/plugins.py); run by hand it says it is a plugin. */
    if (argc == 1 || (argc == 2 && strcmp(argv[1], "plugin") == 0)) return serve_plugin();
    if (argc < 2 || (strcmp(argv[1], "cp") != 0 && strcmp(argv[1], "raw") != 0)) {
        fprintf(stderr, "usage: bench_server plugin | cp|raw [--unix PATH] [--tcp HOST:PORT] [--threads N] [--inline] [--stdin]\n");
        return 2;
    }
    bool raw = strcmp(argv[1], "raw") == 0;
    const char *unix_path = NULL, *tcp = NULL;
    int threads = 0;
    bool watch_stdin = false, inline_handler = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--unix") == 0 && i + 1 < argc) unix_path = argv[++i];
        else if (strcmp(argv[i], "--tcp") == 0 && i + 1 < argc) tcp = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--stdin") == 0) watch_stdin = true;
        else if (strcmp(argv[i], "--inline") == 0) inline_handler = true;
        else {
            fprintf(stderr, "bench_server: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started below inherits the mask */
    g_response[0] = 0x0a;
    g_response[1] = MSG_SIZE - 2;
    memset(g_response + 2, 'r', MSG_SIZE - 2);

    connectplugin_server *server = NULL;
    if (raw) {
        pthread_t t;
        if (unix_path) {
            int l = raw_listen_unix(unix_path);
            if (pthread_create(&t, NULL, accept_loop, (void *)(intptr_t)l) != 0) die_errno("pthread_create");
            printf("unix %s\n", unix_path);
        }
        if (tcp) {
            char addr[96];
            int l = raw_listen_tcp(tcp, addr, sizeof addr);
            if (pthread_create(&t, NULL, accept_loop, (void *)(intptr_t)l) != 0) die_errno("pthread_create");
            printf("tcp %s\n", addr);
        }
    } else {
        connectplugin_error *error = NULL;
        connectplugin_status status;
        connectplugin_server_options *options = connectplugin_server_options_new();
        if (!options) die("connectplugin_server_options_new", CONNECTPLUGIN_ERR_RESOURCE, NULL);
        if (threads > 0 &&
            (status = connectplugin_server_options_set_handler_threads(options, (uint32_t)threads, &error)) !=
                CONNECTPLUGIN_OK)
            die("connectplugin_server_options_set_handler_threads", status, error);
        status = connectplugin_server_new(options, &server, &error);
        connectplugin_server_options_free(options);
        if (status != CONNECTPLUGIN_OK) die("connectplugin_server_new", status, error);
        size_t index = 0;
        int unix_index = -1, tcp_index = -1;
        if (unix_path) {
            if ((status = connectplugin_server_listen_unix(server, unix_path, &error)) != CONNECTPLUGIN_OK)
                die("connectplugin_server_listen_unix", status, error);
            unix_index = (int)index++;
        }
        if (tcp) {
            if ((status = connectplugin_server_listen_tcp(server, tcp, &error)) != CONNECTPLUGIN_OK)
                die("connectplugin_server_listen_tcp", status, error);
            tcp_index = (int)index++;
        }
        status = inline_handler
                     ? connectplugin_server_register_unary_inline(server, PROCEDURE, handle_unary, NULL, NULL, &error)
                     : connectplugin_server_register_unary(server, PROCEDURE, handle_unary, NULL, NULL, &error);
        if (status != CONNECTPLUGIN_OK) die("connectplugin_server_register_unary", status, error);
        if ((status = connectplugin_server_start(server, &error)) != CONNECTPLUGIN_OK)
            die("connectplugin_server_start", status, error);
        if (unix_index >= 0) printf("unix %s\n", unix_path);
        if (tcp_index >= 0) printf("tcp %s\n", connectplugin_server_address(server, (size_t)tcp_index));
    }
    printf("ready\n");
    fflush(stdout);
    if (watch_stdin) {
        pthread_t t;
        if (pthread_create(&t, NULL, stdin_watch, NULL) != 0) die_errno("pthread_create");
        pthread_detach(t);
    }
    int sig = 0;
    sigwait(&set, &sig);
    if (server) {
        connectplugin_error *error = NULL;
        connectplugin_status status = connectplugin_server_stop(server, 1000, &error);
        if (status != CONNECTPLUGIN_OK) die("connectplugin_server_stop", status, error);
        connectplugin_server_free(server);
    }
    if (unix_path) unlink(unix_path);
    return 0;
}
