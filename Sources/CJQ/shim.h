#ifndef WAYPOST_CJQ_SHIM_H
#define WAYPOST_CJQ_SHIM_H

/*
 * jq 1.6 (Debian's libjq-dev). Debian ships no pkg-config file for it: the module map links
 * "jq" by name, and the headers are in /usr/include.
 */
#include <jq.h>
#include <jv.h>
#include <signal.h>
#include <sys/prctl.h>

/*
 * prctl is variadic, which Swift cannot call. A transform worker asks to be killed with its
 * parent, so that a program looping for ever never outlives the server that started it.
 */
static inline int waypost_die_with_parent(void) {
    return prctl(PR_SET_PDEATHSIG, SIGKILL);
}

#endif
