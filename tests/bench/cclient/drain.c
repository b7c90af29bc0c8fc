/*
 * The bench's C-client ceiling: drain a queue with librabbitmq, acking each
 * delivery, as fast as one connection can. Nothing is decoded: this is what
 * the broker and one client socket allow, the rate a Python worker can at
 * best approach.
 *
 * It speaks the bench's child protocol (tests/bench/protocol.py): prints
 * "ready", waits for "go" on stdin, connects, sets basic.qos to PREFETCH,
 * basic.consume (manual acks), prints "consuming", acks every delivery one by
 * one, and after EXPECTED deliveries cancels and prints
 * "result {Outcome as JSON}". The clock starts once WARMUP deliveries are
 * acked (at the first delivery when WARMUP is 0); the resident set is read at
 * that mark and at the last delivery.
 *
 * usage: drain HOST PORT USER PASSWORD VHOST QUEUE EXPECTED WARMUP PREFETCH
 * Built by tests/bench/cbuild.py: cc -O2 drain.c -lrabbitmq
 */

#if defined(__has_include)
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#define FOUND_AMQP 1
#endif
#endif
#ifndef FOUND_AMQP
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what, amqp_rpc_reply_t reply) {
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        fprintf(stderr, "drain: %s: %s\n", what, amqp_error_string2(reply.library_error));
    } else {
        fprintf(stderr, "drain: %s failed (reply type %d)\n", what, (int)reply.reply_type);
    }
    exit(1);
}

static void check(const char *what, amqp_rpc_reply_t reply) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail(what, reply);
}

static double seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* The resident set now, in KiB (/proc/self/statm counts pages). */
static long rss_kb(void) {
    long size = 0, resident = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm == NULL) return 0;
    if (fscanf(statm, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(statm);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void say(const char *line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: drain HOST PORT USER PASSWORD VHOST QUEUE EXPECTED WARMUP PREFETCH\n");
        return 2;
    }
    const char *host = argv[1], *user = argv[3], *password = argv[4], *vhost = argv[5];
    const char *queue = argv[6];
    int port = atoi(argv[2]);
    long expected = atol(argv[7]), warmup = atol(argv[8]);
    int prefetch = atoi(argv[9]);
    long start_at = warmup > 0 ? warmup : 1;

    say("ready");
    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL || strncmp(line, "go", 2) != 0) {
        fprintf(stderr, "drain: expected 'go' on stdin\n");
        return 1;
    }

    amqp_connection_state_t connection = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(connection);
    if (socket == NULL || amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) {
        fprintf(stderr, "drain: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    check("login", amqp_login(connection, vhost, 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, user,
                              password));
    amqp_channel_open(connection, 1);
    check("channel.open", amqp_get_rpc_reply(connection));
    amqp_basic_qos(connection, 1, 0, (uint16_t)prefetch, 0);
    check("basic.qos", amqp_get_rpc_reply(connection));
    amqp_basic_consume_ok_t *consume =
        amqp_basic_consume(connection, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                           amqp_empty_table);
    check("basic.consume", amqp_get_rpc_reply(connection));
    amqp_bytes_t tag = amqp_bytes_malloc_dup(consume->consumer_tag);
    say("consuming");

    long count = 0, rss_warm = 0, rss_end = 0;
    double first = 0, cpu_first = 0;
    while (count < expected) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(connection);
        amqp_rpc_reply_t reply = amqp_consume_message(connection, &envelope, NULL, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail("consume", reply);
        if (amqp_basic_ack(connection, 1, envelope.delivery_tag, 0) != AMQP_STATUS_OK) {
            fprintf(stderr, "drain: basic.ack failed\n");
            return 1;
        }
        amqp_destroy_envelope(&envelope);
        count++;
        if (count == start_at) {
            first = seconds(CLOCK_MONOTONIC);
            cpu_first = seconds(CLOCK_PROCESS_CPUTIME_ID);
            rss_warm = rss_kb();
        }
    }
    rss_end = rss_kb();
    amqp_basic_cancel(connection, 1, tag);
    check("basic.cancel", amqp_get_rpc_reply(connection));
    double end = seconds(CLOCK_MONOTONIC), cpu_end = seconds(CLOCK_PROCESS_CPUTIME_ID);
    amqp_bytes_free(tag);
    amqp_channel_close(connection, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(connection, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(connection);

    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("result {\"count\":%ld,\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"max_rss_kb\":%ld,"
           "\"warmup\":%ld,\"rss_warm_kb\":%ld,\"rss_end_kb\":%ld}\n",
           count, end - first, cpu_end - cpu_first, usage.ru_maxrss, warmup, rss_warm, rss_end);
    fflush(stdout);
    return 0;
}
