/* A threaded interpreter with computed goto: a function-local static table
   of label addresses (`blockaddress`) that must stay with its function. */
#include "shared.h"

static int code(char c) {
  switch (c) {
  case '+': return 0;
  case '-': return 1;
  case '*': return 2;
  default: return 3;
  }
}

int interpret(const char *prog) {
  static void *dispatch[] = {&&op_plus, &&op_minus, &&op_times, &&op_end};
  int acc = 1;
#define NEXT() goto *dispatch[code(*prog++)]
  NEXT();
op_plus:
  acc += 2;
  NEXT();
op_minus:
  acc -= 1;
  NEXT();
op_times:
  acc *= 3;
  NEXT();
op_end:
  return acc;
}
