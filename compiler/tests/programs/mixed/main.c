/* The entry point: calls into every other file, through direct calls,
   function pointers, varargs, aliases, weak symbols and thread-locals. */
#include <pthread.h>
#include <stdio.h>
#include "shared.h"

static int counter = 100; /* util.c has a static of the same name */
static int helper(int x) { return x * 3 + counter; } /* and so does this */

int maybe_missing(void) __attribute__((weak)); /* defined nowhere */

static void *thread_main(void *arg) {
  bump_tls(5);
  printf("thread tls=%d\n", tls_value);
  return arg;
}

int main(void) {
  printf("constructors ran in order: %s\n", init_log);
  printf("helper main=%d util=%d\n", helper(2), util_helper_public(2));
  for (int i = 0; i < 4; i++)
    printf("op %d -> %d\n", i, get_op(i)(7, 3));
  printf("sum=%d\n", sum_ints(5, 1, 2, 3, 4, 5));
  log_fmt("fmt %s %d %.2f\n", "x", 9, 2.5);
  printf("interpret=%d\n", interpret("+++-*"));
  bump_tls(3);
  printf("main tls=%d\n", tls_value);
  pthread_t t;
  pthread_create(&t, 0, thread_main, 0);
  pthread_join(t, 0);
  printf("main tls after thread=%d\n", tls_value);
  printf("hook=%d weak_default=%d\n", hook(), weak_default());
  printf("maybe_missing is %s\n", maybe_missing ? "present" : "absent");
  printf("alias_square=%d alias_of_static=%d\n", alias_square(6), alias_of_static(4));
  int a = next_id();
  int b = next_id();
  printf("ids=%d,%d\n", a, b);
  return 0;
}
