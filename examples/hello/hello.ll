; The quick start's input: `main` prints a greeting, calls `add` (which
; lands in the other partition with `--partitions 2`) and counts its calls
; in a static variable.
target triple = "x86_64-pc-linux-gnu"

@greeting = private unnamed_addr constant [21 x i8] c"hello from aotc: %d\0A\00"
@calls = internal global i32 0

declare i32 @printf(i8*, ...)

define i32 @add(i32 %a, i32 %b) {
  %n = load i32, i32* @calls
  %n1 = add i32 %n, 1
  store i32 %n1, i32* @calls
  %sum = add i32 %a, %b
  ret i32 %sum
}

define i32 @main() {
  %x = call i32 @add(i32 40, i32 2)
  %fmt = getelementptr [21 x i8], [21 x i8]* @greeting, i32 0, i32 0
  call i32 (i8*, ...) @printf(i8* %fmt, i32 %x)
  %n = load i32, i32* @calls
  %ok = icmp eq i32 %n, 1
  %code = select i1 %ok, i32 0, i32 1
  ret i32 %code
}
