/* Static functions reached only through a table of function pointers, and
   aliases (one to an external function, one to a static one). */
#include "shared.h"

static int add(int a, int b) { return a + b; }
static int sub(int a, int b) { return a - b; }
static int mul(int a, int b) { return a * b; }
static int quo(int a, int b) { return a / b; }
static int (*const table[])(int, int) = {add, sub, mul, quo};

int (*get_op(int i))(int, int) { return table[i]; }

int square(int x) { return x * x; }
int alias_square(int x) __attribute__((alias("square")));

static int cube_impl(int x) { return x * x * x; }
int alias_of_static(int x) __attribute__((alias("cube_impl")));
