/* A static child that writes one line to stdout and exits 0: the
 * smallest "job that prints a line". No libc, no loader. */
void _start(void) {
#if defined(__x86_64__)
    static const char msg[] = "line\n";
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(1), "D"(1), "S"(msg), "d"(5) : "rcx", "r11", "memory");
    __asm__ volatile("mov $231, %eax\n xor %edi, %edi\n syscall");
#elif defined(__aarch64__)
    static const char msg[] = "line\n";
    register long x0 __asm__("x0") = 1;
    register const char *x1 __asm__("x1") = msg;
    register long x2 __asm__("x2") = 5;
    register long x8 __asm__("x8") = 64;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x8) : "memory");
    __asm__ volatile("mov x8, #94\n mov x0, #0\n svc #0");
#endif
    for (;;) {}
}
