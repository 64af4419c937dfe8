/* A static child that sleeps 200 ms (nanosleep) and exits 0: many of them
 * in flight at once measure reaping at scale. No libc, no loader. */
struct ts { long sec, nsec; };
void _start(void) {
    static const struct ts t = {0, 200000000};
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(35), "D"(&t), "S"(0) : "rcx", "r11", "memory");
    __asm__ volatile("mov $231, %eax\n xor %edi, %edi\n syscall");
#elif defined(__aarch64__)
    register const struct ts *x0 __asm__("x0") = &t;
    register long x1 __asm__("x1") = 0;
    register long x8 __asm__("x8") = 101;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x1), "r"(x8) : "memory");
    __asm__ volatile("mov x8, #94\n mov x0, #0\n svc #0");
#endif
    for (;;) {}
}
