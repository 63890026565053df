/* Declarations shared by the files of the `mixed` test program. */
#ifndef SHARED_H
#define SHARED_H
extern char init_log[64];
extern __thread int tls_value;
void bump_tls(int n);
int next_id(void);
int util_helper_public(int x);
int sum_ints(int n, ...);
void log_fmt(const char *fmt, ...);
int hook(void);
int weak_default(void);
int (*get_op(int i))(int, int);
int alias_square(int x);
int alias_of_static(int x);
int interpret(const char *prog);
#endif
