/* Statics that share names with main.c's, varargs, and weak definitions. */
#include <stdarg.h>
#include <stdio.h>
#include "shared.h"

static int counter = 5;
static int helper(int x) { return x * 10 + counter; }
int util_helper_public(int x) { return helper(x); }

int sum_ints(int n, ...) {
  va_list ap;
  va_start(ap, n);
  int total = 0;
  for (int i = 0; i < n; i++)
    total += va_arg(ap, int);
  va_end(ap);
  return total;
}

void log_fmt(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

__attribute__((weak)) int hook(void) { return 1; }        /* hook.c overrides it */
__attribute__((weak)) int weak_default(void) { return 7; } /* nobody overrides it */
