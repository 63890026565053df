/* Globals, thread-locals, constructors with priorities, a destructor and a
   function-local static. */
#include <stdio.h>
#include <string.h>
#include "shared.h"

char init_log[64];
__thread int tls_value;
static __thread int tls_calls;

void bump_tls(int n) {
  tls_calls++;
  tls_value += n * tls_calls;
}

__attribute__((constructor(200))) static void init_late(void) { strcat(init_log, "late;"); }
__attribute__((constructor(101))) static void init_early(void) { strcat(init_log, "early;"); }
__attribute__((destructor)) static void goodbye(void) { printf("destructor ran, init_log=%s\n", init_log); }

int next_id(void) {
  static int id = 40;
  return ++id;
}
