; Hand-written IR for what C from clang seldom shows: a comdat holding a
; linkonce_odr function and variable, `llvm.used`, module-level assembly that
; defines a symbol, an internal alias, a private constant whose address
; matters, an ifunc, and a constructor. Many small functions so partitions
; differ.
target triple = "x86_64-pc-linux-gnu"

module asm ".text"
module asm ".globl asm_answer"
module asm ".type asm_answer,@function"
module asm "asm_answer:"
module asm "  movl $42, %eax"
module asm "  ret"

$pair = comdat any

@pair_data = linkonce_odr global i32 5, comdat($pair)
@counter = internal global i32 0
@table = private constant [2 x i32] [i32 3, i32 4]
@fmt = private unnamed_addr constant [7 x i8] c"%s=%d\0A\00"
@name_pair = private unnamed_addr constant [5 x i8] c"pair\00"
@name_table = private unnamed_addr constant [6 x i8] c"table\00"
@name_asm = private unnamed_addr constant [4 x i8] c"asm\00"
@name_counter = private unnamed_addr constant [8 x i8] c"counter\00"
@name_kept = private unnamed_addr constant [5 x i8] c"kept\00"
@name_same = private unnamed_addr constant [5 x i8] c"same\00"
@llvm.used = appending global [1 x i8*] [i8* bitcast (i32 ()* @kept to i8*)], section "llvm.metadata"
@llvm.global_ctors = appending global [1 x { i32, void ()*, i8* }] [{ i32, void ()*, i8* } { i32 65535, void ()* @init, i8* null }]

@bump_alias = internal alias void (), void ()* @bump
@pick = ifunc i32 (), i32 ()* ()* @pick_resolver
@name_ifunc = private unnamed_addr constant [6 x i8] c"ifunc\00"

declare i32 @printf(i8*, ...)
declare i32 @asm_answer()

define linkonce_odr i32 @pair_get() comdat($pair) {
  %v = load i32, i32* @pair_data
  ret i32 %v
}

define internal void @bump() {
  %v = load i32, i32* @counter
  %w = add i32 %v, 1
  store i32 %w, i32* @counter
  ret void
}

define internal void @init() {
  store i32 100, i32* @counter
  ret void
}

define internal i32 @pick_impl() {
  ret i32 11
}

define internal i32 ()* @pick_resolver() {
  ret i32 ()* @pick_impl
}

define i32 @f_ifunc() {
  %v = call i32 @pick()
  ret i32 %v
}

define i32 @kept() {
  ret i32 7
}

define i32 @f_pair() {
  call void @bump_alias()
  %p = call i32 @pair_get()
  ret i32 %p
}

define i32 @f_table() {
  call void @bump_alias()
  %p = getelementptr [2 x i32], [2 x i32]* @table, i32 0, i32 1
  %v = load i32, i32* %p
  ret i32 %v
}

define i32 @f_asm() {
  call void @bump()
  %v = call i32 @asm_answer()
  ret i32 %v
}

define i32 @f_counter() {
  %v = load i32, i32* @counter
  ret i32 %v
}

define i1 @f_same_table(i32* %p) {
  %t = getelementptr [2 x i32], [2 x i32]* @table, i32 0, i32 0
  %eq = icmp eq i32* %p, %t
  ret i1 %eq
}

define i32* @f_table_addr() {
  %t = getelementptr [2 x i32], [2 x i32]* @table, i32 0, i32 0
  ret i32* %t
}

define void @show(i8* %name, i32 %v) {
  %f = getelementptr [7 x i8], [7 x i8]* @fmt, i32 0, i32 0
  call i32 (i8*, ...) @printf(i8* %f, i8* %name, i32 %v)
  ret void
}

define i32 @main() {
  %a = call i32 @f_pair()
  call void @show(i8* getelementptr ([5 x i8], [5 x i8]* @name_pair, i32 0, i32 0), i32 %a)
  %b = call i32 @f_table()
  call void @show(i8* getelementptr ([6 x i8], [6 x i8]* @name_table, i32 0, i32 0), i32 %b)
  %c = call i32 @f_asm()
  call void @show(i8* getelementptr ([4 x i8], [4 x i8]* @name_asm, i32 0, i32 0), i32 %c)
  %d = call i32 @f_counter()
  call void @show(i8* getelementptr ([8 x i8], [8 x i8]* @name_counter, i32 0, i32 0), i32 %d)
  %e = call i32 @kept()
  call void @show(i8* getelementptr ([5 x i8], [5 x i8]* @name_kept, i32 0, i32 0), i32 %e)
  %addr = call i32* @f_table_addr()
  %same = call i1 @f_same_table(i32* %addr)
  %s = zext i1 %same to i32
  call void @show(i8* getelementptr ([5 x i8], [5 x i8]* @name_same, i32 0, i32 0), i32 %s)
  %i = call i32 @f_ifunc()
  call void @show(i8* getelementptr ([6 x i8], [6 x i8]* @name_ifunc, i32 0, i32 0), i32 %i)
  ret i32 0
}
