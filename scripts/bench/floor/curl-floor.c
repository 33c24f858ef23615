// curl-floor: the least CPU a forwarder built on libcurl's multi interface spends per request.
//
// Part of scripts/bench/floor.sh (see scripts/bench/README.md, "Floor benchmark"). It keeps
// CONCURRENCY transfers in flight against one upstream: each is a POST of a 1024-byte JSON
// body over a kept-alive connection, and each easy handle is added again as soon as its
// transfer completes, so the connections are reused. One thread, like Waypost's forwarder,
// and the same calls (curl_multi_perform, curl_multi_info_read, curl_multi_poll); nothing
// else: no journal, no queues, no headers built per message.
//
// Usage: curl-floor [-c CONCURRENCY] [-t SECONDS] URL
//   -c  transfers in flight (default 16)
//   -t  how long to run, in seconds (default 10)
//
// Prints one line of key=value pairs:
//   concurrency=16 requests=123456 seconds=10.00 req_per_s=12345 cpu_us_per_request=12.3
//   user_us_per_request=4.5 sys_us_per_request=7.8
// CPU is this process's user + system time (getrusage) over the run, divided by the
// requests completed in it. Exit status 0, or 1 when a transfer fails or does not get a 200
// (the upstream is meant to answer every POST with 200), 64 for bad arguments.
//
// Build: gcc -O2 -o curl-floor curl-floor.c -lcurl

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

#define BODY_BYTES 1024

// The response's headers and body are read and dropped.
static size_t discard(char *data, size_t size, size_t count, void *user) {
    (void)data;
    (void)user;
    return size * count;
}

static void usage(void) {
    fprintf(stderr, "usage: curl-floor [-c CONCURRENCY] [-t SECONDS] URL\n");
    exit(64);
}

int main(int argc, char **argv) {
    long concurrency = 16;
    double seconds = 10;
    int opt;
    while ((opt = getopt(argc, argv, "c:t:")) != -1) {
        switch (opt) {
        case 'c': concurrency = strtol(optarg, NULL, 10); break;
        case 't': seconds = strtod(optarg, NULL); break;
        default: usage();
        }
    }
    if (optind != argc - 1 || concurrency < 1 || seconds <= 0) usage();
    const char *url = argv[optind];

    // The same 1024 bytes as post-1k.lua: {"data":"xxx...x"}.
    static char body[BODY_BYTES + 1];
    memset(body, 'x', BODY_BYTES);
    memcpy(body, "{\"data\":\"", 9);
    memcpy(body + BODY_BYTES - 2, "\"}", 2);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl-floor: curl_global_init failed\n");
        return 1;
    }
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, concurrency);

    // Headers like those Waypost forwards for a wrk request: the source's Content-Type and
    // User-Agent, the correlation id, X-Forwarded-For; "Accept:" and "Expect:" switch off
    // curl's own Accept and "Expect: 100-continue", as Waypost does.
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "User-Agent: wrk");
    headers = curl_slist_append(headers, "X-Correlation-ID: 01JDX0000ABCDEFGHJKMNPQRSTVW");
    headers = curl_slist_append(headers, "X-Forwarded-For: 127.0.0.1");
    headers = curl_slist_append(headers, "Accept:");
    headers = curl_slist_append(headers, "Expect:");

    CURL **easy = calloc((size_t)concurrency, sizeof *easy);
    if (easy == NULL) return 1;
    for (long i = 0; i < concurrency; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE, (long)BODY_BYTES);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_HEADERFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_TCP_NODELAY, 1L);
        curl_multi_add_handle(multi, easy[i]);
    }

    long requests = 0;
    int running = 0;
    double user0, sys0, user1, sys1;
    double started = wall_seconds();
    cpu_seconds(&user0, &sys0);
    while (wall_seconds() - started < seconds) {
        curl_multi_perform(multi, &running);
        CURLMsg *message;
        int left;
        while ((message = curl_multi_info_read(multi, &left)) != NULL) {
            if (message->msg != CURLMSG_DONE) continue;
            CURL *handle = message->easy_handle;
            long status = 0;
            curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
            if (message->data.result != CURLE_OK || status != 200) {
                fprintf(stderr, "curl-floor: transfer failed: %s, HTTP status %ld\n",
                        curl_easy_strerror(message->data.result), status);
                return 1;
            }
            requests++;
            // Start the same transfer again on the connection just freed.
            curl_multi_remove_handle(multi, handle);
            curl_multi_add_handle(multi, handle);
        }
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double elapsed = wall_seconds() - started;
    cpu_seconds(&user1, &sys1);

    if (requests == 0) {
        fprintf(stderr, "curl-floor: no request completed in %.1f s\n", elapsed);
        return 1;
    }
    double user_us = (user1 - user0) * 1e6 / (double)requests;
    double sys_us = (sys1 - sys0) * 1e6 / (double)requests;
    printf("concurrency=%ld requests=%ld seconds=%.2f req_per_s=%.0f cpu_us_per_request=%.1f "
           "user_us_per_request=%.1f sys_us_per_request=%.1f\n",
           concurrency, requests, elapsed, (double)requests / elapsed, user_us + sys_us, user_us, sys_us);

    for (long i = 0; i < concurrency; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(easy);
    curl_global_cleanup();
    return 0;
}
