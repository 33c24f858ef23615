#ifndef WAYPOST_CCURL_SHIM_H
#define WAYPOST_CCURL_SHIM_H

#include <curl/curl.h>

/*
 * curl_easy_setopt and curl_easy_getinfo are variadic, which Swift
 * cannot call. These typed wrappers fix the argument type per family of options, as
 * documented for each option in curl's manual (long, pointer/string, off_t, callback).
 */

static inline CURLcode waypost_easy_setopt_long(CURL *easy, CURLoption option, long value) {
    return curl_easy_setopt(easy, option, value);
}

static inline CURLcode waypost_easy_setopt_string(CURL *easy, CURLoption option, const char *value) {
    return curl_easy_setopt(easy, option, value);
}

static inline CURLcode waypost_easy_setopt_pointer(CURL *easy, CURLoption option, void *value) {
    return curl_easy_setopt(easy, option, value);
}

static inline CURLcode waypost_easy_setopt_off_t(CURL *easy, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(easy, option, value);
}

static inline CURLcode waypost_easy_setopt_slist(CURL *easy, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(easy, option, value);
}

typedef size_t (*waypost_data_callback)(char *data, size_t size, size_t count, void *userdata);

/// For CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION and CURLOPT_READFUNCTION.
static inline CURLcode waypost_easy_setopt_data_callback(CURL *easy, CURLoption option, waypost_data_callback value) {
    return curl_easy_setopt(easy, option, value);
}

static inline CURLcode waypost_easy_getinfo_long(CURL *easy, CURLINFO info, long *value) {
    return curl_easy_getinfo(easy, info, value);
}

static inline CURLcode waypost_easy_getinfo_pointer(CURL *easy, CURLINFO info, void **value) {
    return curl_easy_getinfo(easy, info, value);
}

/// CURLMsg.data is a union; Swift sees it, but reading `result` through a helper is clearer.
static inline CURLcode waypost_msg_result(const CURLMsg *msg) {
    return msg->data.result;
}

#endif
