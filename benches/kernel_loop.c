// kernel_loop.c — the event loops of benches/kernel_cost.sh (a measure, not a test).
//
//   kernel_loop exec N BINARY   fork + execve(BINARY) + waitpid, N times
//   kernel_loop connect N PORT  socket + connect(127.0.0.1:PORT) + close, N times
//                               (PORT closed: each connect fails with ECONNREFUSED
//                               after the cgroup/connect4 program ran)
//
// Prints the wall-clock time of the whole loop in nanoseconds (CLOCK_MONOTONIC),
// the number of iterations whose outcome was not the expected one, and the CPU
// time (user + system, of this process and its waited-for children) of the
// loop in nanoseconds: less sensitive than wall-clock time to other load on
// the machine. The exec program runs in the child (sched_process_exec), the
// connect program in this process: both are in the CPU time.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	long long us = 0;
	us += (long long)self.ru_utime.tv_sec * 1000000 + self.ru_utime.tv_usec;
	us += (long long)self.ru_stime.tv_sec * 1000000 + self.ru_stime.tv_usec;
	us += (long long)kids.ru_utime.tv_sec * 1000000 + kids.ru_utime.tv_usec;
	us += (long long)kids.ru_stime.tv_sec * 1000000 + kids.ru_stime.tv_usec;
	return us * 1000;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s exec N BINARY | connect N PORT\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	long bad = 0;
	long long t0, t1, c0, c1;
	if (strcmp(argv[1], "exec") == 0) {
		char *const args[] = {argv[3], NULL};
		char *const envp[] = {NULL};
		c0 = cpu_ns();
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				execve(argv[3], args, envp);
				_exit(127);
			}
			int st = 0;
			if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
				bad++;
		}
		t1 = now_ns();
		c1 = cpu_ns();
	} else if (strcmp(argv[1], "connect") == 0) {
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c0 = cpu_ns();
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			if (fd < 0) {
				bad++;
				continue;
			}
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != ECONNREFUSED)
				bad++;
			close(fd);
		}
		t1 = now_ns();
		c1 = cpu_ns();
	} else {
		fprintf(stderr, "unknown loop %s\n", argv[1]);
		return 2;
	}
	printf("%lld %ld %lld\n", t1 - t0, bad, c1 - c0);
	return 0;
}
