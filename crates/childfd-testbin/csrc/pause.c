/* A static child that waits for signals forever (pause in a loop): a
 * running child that costs no more to spawn than exit0. */
void _start(void) {
    for (;;) {
#if defined(__x86_64__)
        __asm__ volatile("mov $34, %%eax\n syscall" ::: "rax", "rcx", "r11", "memory");
#elif defined(__aarch64__)
        /* ppoll(NULL, 0, NULL, NULL): no pause syscall on arm64 */
        __asm__ volatile("mov x8, #73\n mov x0, #0\n mov x1, #0\n mov x2, #0\n mov x3, #0\n svc #0" ::: "x0", "x8", "memory");
#endif
    }
}
