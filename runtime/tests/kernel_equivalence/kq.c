/*
 * kq — the acting process of tests/kernel_equivalence.rs. Built static so
 * that it opens no file of its own (no dynamic loader): every open the
 * kernel sees from it is one the test asked for.
 *
 *   kq [-OPTION...]                     exit 0 (a `true`)
 *   kq open PATH r|w [SYSCALL]          open for reading / writing (O_CREAT) with
 *                                       openat (default), open, openat2 or creat
 *   kq connect|bind 4|6 tcp|udp ADDR PORT
 *                                       exit 0, 1 on EPERM, 3 on another error
 *   kq id SYSCALL A0 A1 A2              setuid/setgid/setreuid/.../setresgid
 *   kq capset HEX                       effective = permitted = HEX
 *   kq ptrace TARGET                    fork TARGET (`TARGET sleep`), print its
 *                                       pid, PTRACE_ATTACH it
 *   kq sleep                            wait (at most 5 s) for the parent to go
 *
 * Any other failure exits 2.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long num(const char *s) { return strtol(s, NULL, 0); }

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-')
		return 0; /* a `true`, with or without options */
	const char *op = argv[1];
	if (!strcmp(op, "open") && (argc == 4 || argc == 5)) {
		int flags = argv[3][0] == 'w' ? O_WRONLY | O_CREAT : O_RDONLY;
		const char *how = argc == 5 ? argv[4] : "openat";
		long fd;
		if (!strcmp(how, "open")) {
			fd = syscall(SYS_open, argv[2], flags, 0644);
		} else if (!strcmp(how, "creat")) {
			fd = syscall(SYS_creat, argv[2], 0644);
		} else if (!strcmp(how, "openat2")) {
			struct open_how h = {.flags = flags, .mode = flags & O_CREAT ? 0644 : 0};
			fd = syscall(SYS_openat2, AT_FDCWD, argv[2], &h, sizeof(h));
		} else {
			fd = syscall(SYS_openat, AT_FDCWD, argv[2], flags, 0644);
		}
		return fd < 0 ? 2 : 0;
	}
	if ((!strcmp(op, "connect") || !strcmp(op, "bind")) && argc == 6) {
		int v6 = argv[2][0] == '6';
		int type = !strcmp(argv[3], "tcp") ? SOCK_STREAM : SOCK_DGRAM;
		int s = socket(v6 ? AF_INET6 : AF_INET, type, 0);
		if (s < 0)
			return 2;
		int one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(num(argv[5]))};
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(num(argv[5]))};
		if (inet_pton(v6 ? AF_INET6 : AF_INET, argv[4], v6 ? (void *)&a6.sin6_addr : (void *)&a4.sin_addr) != 1)
			return 2;
		struct sockaddr *sa = v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4;
		socklen_t len = v6 ? sizeof(a6) : sizeof(a4);
		int r = op[0] == 'c' ? connect(s, sa, len) : bind(s, sa, len);
		if (r == 0)
			return 0;
		return errno == EPERM ? 1 : 3;
	}
	if (!strcmp(op, "id") && argc == 6) {
		const char *names[] = {"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid"};
		const long nrs[] = {SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setregid, SYS_setresuid, SYS_setresgid};
		for (int i = 0; i < 6; i++)
			if (!strcmp(argv[2], names[i]))
				return syscall(nrs[i], num(argv[3]), num(argv[4]), num(argv[5])) == 0 ? 0 : 2;
		return 2;
	}
	if (!strcmp(op, "capset") && argc == 3) {
		unsigned long long caps = strtoull(argv[2], NULL, 16);
		struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct d[2] = {
			{.effective = (unsigned)caps, .permitted = (unsigned)caps},
			{.effective = (unsigned)(caps >> 32), .permitted = (unsigned)(caps >> 32)},
		};
		return syscall(SYS_capset, &h, d) == 0 ? 0 : 2;
	}
	if (!strcmp(op, "ptrace") && argc == 3) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) != 0)
			return 2;
		pid_t c = fork();
		if (c == 0) {
			/* The tracee may outlive us stopped (we are killed after
			 * the attach): it must not hold the test's stdout pipe. */
			close(1);
			close(p[0]);
			execl(argv[2], argv[2], "sleep", (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		char b;
		/* EOF once the child has exec'd: its exe is TARGET. */
		if (read(p[0], &b, 1) != 0)
			return 2;
		printf("%d\n", c);
		fflush(stdout);
		int rc = ptrace(PTRACE_ATTACH, c, 0, 0) == 0 ? 0 : 2;
		kill(c, SIGKILL);
		waitpid(c, NULL, 0);
		return rc;
	}
	if (!strcmp(op, "sleep")) {
		/* Until the tracer is gone (killed by a deny, or done). */
		pid_t parent = getppid();
		for (int i = 0; i < 500 && getppid() == parent; i++)
			usleep(10000);
		return 0;
	}
	return 2;
}
