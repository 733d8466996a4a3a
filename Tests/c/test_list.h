/* test_list.h -- every C test, one line each. runner.c includes this with
 * TEST(), TEST_POLL() and TEST_SWITCH() defined to suit it; CMakeLists.txt
 * reads the same lines to register each test with CTest. TEST_POLL(x) is
 * two tests, x_epoll and x_uring; TEST_SWITCH(x) is three, x_asm, x_fast
 * and x_ucontext. Keep one entry per line. */

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

/* test_fd_wait.c */
TEST_POLL(fd_wait_pipe)
TEST_POLL(fd_wait_pipe_shared_stack)
TEST_POLL(fd_wait_deadline)
TEST_POLL(fd_wait_errors)
TEST(fd_wait_outside_task_aborts)

/* test_threadsafe.c */
TEST_POLL(threadsafe_4x100k)
TEST_POLL(threadsafe_wakeup)
TEST(threadsafe_wrong_thread_aborts)

/* test_loop.c */
TEST(loop_run_empty)
TEST(loop_stop)
TEST(loop_batch_count)
TEST(loop_free_busy)
TEST(loop_backend_epoll)

/* test_errors.c */
TEST(errors_strerror)
TEST(errors_backend_env_bogus)
TEST(errors_version)

/* test_future.c */
TEST_SWITCH(future_await_order)
TEST_SWITCH(future_complete_twice)
TEST_SWITCH(future_done_callbacks)
TEST_SWITCH(future_set_task_future_aborts)
TEST_SWITCH(future_await_outside_task_aborts)
TEST_SWITCH(future_await_misuse_aborts)

/* test_task.c */
TEST_SWITCH(task_spawn_runs_next_iteration)
TEST_SWITCH(task_join_results)
TEST_SWITCH(task_user_word)
TEST_SWITCH(task_cancel_before_first_run)
TEST_SWITCH(task_sleep_deadline_order)
TEST_SWITCH(task_sleep_zero_yields)
TEST_SWITCH(task_sleep_until)
TEST_SWITCH(task_tree_spawned_from_tasks)
TEST_SWITCH(task_100k_concurrent)
TEST_SWITCH(task_loops_on_two_threads)
TEST_SWITCH(task_join_results_shared_stack)
TEST_SWITCH(task_sleep_deadline_order_shared_stack)
TEST_SWITCH(task_tree_spawned_from_tasks_shared_stack)
TEST_SWITCH(task_100k_concurrent_shared_stack)

/* test_cancel.c */
TEST_SWITCH(cancel_parked_on_future)
TEST_SWITCH(cancel_in_sleep)
TEST_SWITCH(cancel_in_gather)
TEST_SWITCH(cancel_self)
TEST_SWITCH(cancel_while_queued)
TEST_SWITCH(cancel_in_sleep_shared_stack)
TEST_SWITCH(cancel_in_gather_shared_stack)
TEST_SWITCH(cancel_self_shared_stack)

/* test_deadline.c */
TEST_SWITCH(deadline_expires_in_sleep)
TEST_SWITCH(deadline_expires_in_await)
TEST_SWITCH(deadline_not_expired)
TEST_SWITCH(deadline_nested_inner_shorter)
TEST_SWITCH(deadline_nested_outer_shorter)
TEST_SWITCH(deadline_in_gather)
TEST_SWITCH(deadline_cancel_inside_scope)
TEST_SWITCH(deadline_exit_out_of_order_aborts)
TEST_SWITCH(deadline_return_inside_scope_aborts)
TEST_SWITCH(deadline_shield_scopes)
TEST_SWITCH(deadline_wait_for_cancels_on_expiry)
TEST_SWITCH(deadline_nested_inner_shorter_shared_stack)
TEST_SWITCH(deadline_nested_outer_shorter_shared_stack)
TEST_SWITCH(deadline_in_gather_shared_stack)

/* test_gather.c */
TEST_SWITCH(gather_argument_order)
TEST_SWITCH(gather_first_failure_by_position)
TEST_SWITCH(gather_of_gathers)
TEST_SWITCH(gather_mixed_futures)
TEST_SWITCH(gather_zero_futures)
TEST_SWITCH(gather_of_gathers_shared_stack)

/* test_close.c */
TEST_SWITCH(close_reports_unretrieved)
TEST_SWITCH(close_reports_unretrieved_stderr)
TEST_SWITCH(close_cancels_parked_tasks)
TEST_SWITCH(close_after_tasks_finished)
TEST_SWITCH(close_cancels_tasks_spawned_while_unwinding)
TEST_SWITCH(close_drops_task_that_will_not_unwind)
TEST_SWITCH(close_from_inside_a_task_aborts)
TEST_SWITCH(close_reports_unretrieved_shared_stack)
TEST_SWITCH(close_cancels_parked_tasks_shared_stack)

/* test_main.c */
TEST_SWITCH(main_result_and_error)
TEST_SWITCH(main_cancels_leftover_tasks)
TEST_SWITCH(main_parked_forever_returns)
TEST_SWITCH(periodic_fixed_rate_and_cancel)
TEST_SWITCH(periodic_stops_on_error)
TEST_SWITCH(periodic_overrun_skips_missed_ticks)
TEST_SWITCH(periodic_cancelled_before_first_run_frees)
TEST_SWITCH(main_cancels_leftover_tasks_shared_stack)
TEST_SWITCH(periodic_fixed_rate_and_cancel_shared_stack)

/* test_switch.c */
TEST_SWITCH(switch_callee_saved_registers)
TEST_SWITCH(switch_values_across_awaits)
TEST_SWITCH(switch_rounding_mode)
TEST_SWITCH(switch_callee_saved_registers_shared_stack)
TEST_SWITCH(switch_values_across_awaits_shared_stack)
TEST_SWITCH(switch_rounding_mode_shared_stack)

/* test_stack.c */
TEST_SWITCH(stack_size_usable)
TEST_SWITCH(stack_reused_by_next_task)
TEST_SWITCH(stack_overflow_recursion)
TEST_SWITCH(stack_overflow_large_frame)
TEST_SWITCH(stack_overflow_on_second_thread)
TEST_SWITCH(stack_size_usable_shared_stack)
TEST_SWITCH(stack_overflow_recursion_shared_stack)

/* test_sync.c */
TEST_SWITCH(sync_event_set_wakes_all_fifo)
TEST_SWITCH(sync_lock_fifo_handoff_no_barging)
TEST(sync_misuse_aborts)
TEST_SWITCH(sync_semaphore_counts_fifo)
TEST_SWITCH(sync_queue_try_and_wrap)
TEST_SWITCH(sync_queue_get_blocks_fifo)
TEST_SWITCH(sync_queue_put_blocks_fifo)
TEST_SWITCH(sync_cancel_while_parked)
TEST_SWITCH(sync_cancel_after_wake)
TEST_SWITCH(sync_deadline_while_waiting)
TEST_SWITCH(sync_deadline_at_handoff)
TEST_SWITCH(sync_mixed_waits)
TEST_SWITCH(sync_queue_ring_10k)
TEST_SWITCH(sync_queue_ring_10k_shared_stack)

/* test_sync_cb.c */
TEST_SWITCH(sync_cb_lock_fifo_mixed)
TEST_SWITCH(sync_cb_event_semaphore)
TEST_SWITCH(sync_cb_queue)
TEST_SWITCH(sync_cb_queue_chain_10k)
TEST(sync_cb_misuse_aborts)

/* test_shared.c */
TEST_SWITCH(shared_and_private_exchange_through_queues)
TEST_SWITCH(shared_safe_pattern_heap_handoff)
TEST(shared_million_tasks_alive)

/* test_uring.c */
TEST(uring_auto_picks_uring)
TEST(uring_env_selects_uring)
TEST(uring_seccomp_falls_back_to_epoll)
TEST_POLL(watchers_fd_reuse_no_stale)
TEST_POLL(watchers_1000_pipes)
TEST_POLL(watchers_unwatch_not_starved)
TEST_POLL(watchers_level_zero_timeout)

/* test_net.c */
TEST_POLL(net_echo_1b_to_4mib)
TEST_POLL(net_echo_ipv6)
TEST_POLL(net_echo_shared_stack_buffers)
TEST_POLL(net_recv_until_split_delimiter)
TEST_POLL(net_recv_until_many_lines)
TEST_POLL(net_recv_until_emsgsize_and_eof)
TEST_POLL(net_200_clients_100_round_trips)
TEST_POLL(net_200_clients_shared_stack)
TEST_POLL(net_10k_connections_no_fd_left)
TEST_POLL(net_peer_reset_no_sigpipe)
TEST_POLL(net_connect_refused)
TEST_POLL(net_eof_is_zero)
TEST_POLL(net_close_wakes_parked_recv)
TEST_POLL(net_cancel_parked_recv_accept_connect)
TEST_POLL(net_cancel_after_recv_completed_keeps_data)
TEST_POLL(net_deadline_around_recv)
TEST_POLL(net_accept_emfile_does_not_spin)
TEST_POLL(net_zero_allocations_per_round_trip)
TEST_POLL(net_connect_localhost_resolved_off_thread)
TEST(net_suite_on_fallback_when_uring_blocked)

/* test_io.c */
TEST_POLL(io_round_trip)
TEST_POLL(io_cancel_and_close)
TEST_POLL(io_restart_aborts)
TEST_POLL(io_resolve)
TEST_POLL(io_connector_and_acceptor)
TEST_POLL(io_acceptor_emfile_pauses)
TEST_POLL(io_restart_on_the_same_port_at_once)
TEST_POLL(io_restart_after_sigkill)

/* test_file.c */
TEST_POLL(file_sizes)
TEST_POLL(file_shared_stack)
TEST_POLL(file_large)
TEST_POLL(file_holes)
TEST_POLL(file_errors)
TEST_POLL(file_eacces)
TEST_POLL(file_read_keeps_timers)
TEST_POLL(file_read_keeps_timers_256_cached)
TEST_POLL(file_partly_cached)
TEST_POLL(file_cancel_before_start)
TEST_POLL(file_cancel_large_read)
TEST_POLL(file_read_deadline)
TEST_POLL(file_send)
TEST(file_outside_task_aborts)

/* test_pool.c */
TEST(pool_10k_jobs)
TEST(pool_cancel_and_order)
TEST(pool_abandon)
TEST(pool_to_thread)
TEST(pool_runs_the_resolver)
TEST(pool_default_size_from_env)

/* test_signal.c */
TEST_POLL(signal_reaches_every_watcher)
TEST_POLL(signal_keeps_a_mask_it_found)
TEST_POLL(signal_before_anyone_looks_is_counted)
TEST_POLL(signal_wait_in_a_task)
TEST_POLL(signal_to_another_thread_is_moved_to_the_loop)
TEST_POLL(signal_reaches_two_loops_on_two_threads)
TEST(signal_refuses_what_cannot_be_watched)

/* test_unix.c */
TEST_POLL(unix_echo_path_and_abstract)
TEST(unix_stale_path_and_live_server)
TEST(unix_path_too_long_is_refused)
TEST_POLL(unix_connect_errors)

/* test_process.c */
TEST_POLL(process_exit_codes_and_exec_errors)
TEST_POLL(process_streams_env_and_folder)
TEST_POLL(process_kill)
TEST_POLL(process_outlives_its_handle_and_its_loop)

/* test_uring_ops.c */
TEST(uring_ops_native_path)
TEST(uring_ops_round_trip)
TEST(uring_ops_partial_send)
TEST(uring_ops_cancel_parked_recv)
TEST(uring_ops_cancel_after_kernel_finished_keeps_data)
TEST(uring_ops_close_fd_recv_in_flight)
TEST(uring_ops_fd_reuse_no_stale)
TEST(uring_ops_1000_concurrent)
TEST(uring_ops_not_starved_by_ready_work)
TEST(uring_ops_without_sync_cancel_use_readiness)

/* test_udp.c */
TEST_POLL(udp_sizes_0_to_65507)
TEST_POLL(udp_sizes_shared_stack)
TEST_POLL(udp_ipv6_loopback)
TEST_POLL(udp_ops_recvmsg_sendmsg_truncation)
TEST_POLL(udp_truncation_in_a_task)
TEST_POLL(udp_10k_in_order_none_lost)
TEST_POLL(udp_connected_refused)
TEST_POLL(udp_cancel_and_timeout_of_parked_recv)
TEST(udp_broadcast_option)
TEST(udp_multicast_join_leave)
TEST(udp_address_parsing)

/* test_uring_zc.c */
TEST_POLL(uring_zc_sizes_in_order)
TEST(uring_zc_cancel_keeps_buffer_until_notification)
TEST(uring_zc_close_while_held)

/* test_uring_recv.c */
TEST(uring_recv_ring_runs_dry_nothing_lost)
TEST(uring_recv_lower_tier_without_multishot)
TEST(uring_recv_unread_bytes_pause_then_flow)
TEST(uring_recv_peek_read_and_eof)
TEST(uring_backend_info_names_the_tier)
TEST(uring_accept_multishot_queues_and_delivers)


/* test_group.c */
TEST_POLL(group_connections_spread_reuseport)
TEST_POLL(group_connections_spread_acceptor)
TEST_POLL(group_await_work_on_another_loop)
TEST_POLL(group_promise_from_thread_and_loop)
TEST_POLL(group_promise_released_before_completion)
TEST_POLL(group_1000_connections_nothing_left)
TEST_POLL(group_graceful_stop)
TEST_POLL(group_stop_idle_is_quick)
TEST(group_misuse_names_itself)
TEST(group_default_size_and_pinning)
