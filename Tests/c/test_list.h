/* test_list.h -- every C test, one line each. runner.c includes this with
 * TEST() and TEST_POLL() defined to suit it; CMakeLists.txt reads the same
 * lines to register each test with CTest. TEST_POLL(x) is two tests,
 * x_epoll and x_uring. Keep one entry per line. */

/* test_handles.c */
TEST(handles_fifo)
TEST(handles_snapshot)
TEST(handles_cancel)
TEST(handles_double_schedule_aborts)

/* test_timers.c */
TEST(timers_order_ties)
TEST(timers_negative_delay)
TEST(timers_huge_delay)
TEST(timers_cancel_count)
TEST(timers_cancel_random_100k)
TEST(timers_cancel_queued)
TEST(timers_batch_order)
TEST(timers_cancel_other_loop_aborts)
TEST(timers_reschedule_pending_aborts)
TEST_POLL(timers_sleep_5ms)

/* test_watchers.c */
TEST_POLL(watchers_pipe_read)
TEST_POLL(watchers_eexist)
TEST_POLL(watchers_einval)
TEST_POLL(watchers_ebadf)
TEST_POLL(watchers_eperm)
TEST_POLL(watchers_both_directions)
TEST_POLL(watchers_unwatch_queued)

/* test_threadsafe.c */
TEST_POLL(threadsafe_4x100k)
TEST_POLL(threadsafe_wakeup)
TEST(threadsafe_wrong_thread_aborts)

/* test_loop.c */
TEST(loop_run_empty)
TEST(loop_stop)
TEST(loop_free_busy)
TEST(loop_backend_epoll)

/* test_errors.c */
TEST(errors_strerror)
TEST(errors_backend_env_bogus)
