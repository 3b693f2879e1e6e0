;; luhn -- a sample Branchline IVR plug-in (requirement R-4.13).
;;
;; Checks the Luhn checksum of a card number a caller typed, so a flow can reject
;; a mistyped number before sending it anywhere.
;;
;;   input   a JSON string of digits, e.g. "4111111111111111" (the quotes are part of
;;           the bytes the host passes)
;;   output  {"valid":true} or {"valid":false}
;;
;; Anything but a JSON string made only of the digits 0-9 (a number, an object, a
;; string with spaces, dashes or escapes, fewer than two digits) gives
;; {"valid":false}.
;;
;; The ABI is described in appliance/ivr/plugins.py: export `memory`, `alloc(size) ->
;; ptr` and the functions a flow calls, `fn(ptr, len) -> (out_ptr << 32) | out_len`;
;; no imports at all. Deploy it as <storage>/<tenant>/plugins/luhn.wat (or compile it
;; to luhn.wasm) and call plug-in "luhn", function "check".
(module
  (memory (export "memory") 1)

  ;; the two possible answers, returned in place (never written to)
  (data (i32.const 16) "{\"valid\":true}")   ;; 14 bytes at 16
  (data (i32.const 32) "{\"valid\":false}")  ;; 15 bytes at 32

  ;; bump allocator: everything from 1024 up is handed out and never freed (each call
  ;; gets a fresh instance, so there is nothing to free)
  (global $heap (mut i32) (i32.const 1024))

  (func (export "alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local $have i32)
    ;; far more than the host ever allows; also keeps the sums below from wrapping
    (if (i32.gt_u (local.get $size) (i32.const 0x40000000))
      (then (unreachable)))
    (local.set $ptr (global.get $heap))
    ;; end = ptr + size, rounded up to a multiple of 8
    (local.set $end
      (i32.and
        (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7))
        (i32.const -8)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        ;; grow by the missing bytes, in 64 KiB pages; -1 means the host said no
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 0xffff))
                  (i32.const 16)))
              (i32.const -1))
          (then (unreachable)))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; the packed answer for valid (1) or not (0)
  (func $answer (param $valid i32) (result i64)
    (if (result i64) (local.get $valid)
      (then (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 14)))
      (else (i64.or (i64.shl (i64.const 32) (i64.const 32)) (i64.const 15)))))

  (func (export "check") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)       ;; offset of the digit being read, from the right
    (local $digit i32)
    (local $sum i32)
    (local $double i32)  ;; 1 for every second digit from the right
    ;; at least a quote, two digits and a quote
    (if (i32.lt_u (local.get $len) (i32.const 4))
      (then (return (call $answer (i32.const 0)))))
    (if (i32.ne (i32.load8_u (local.get $ptr)) (i32.const 0x22))
      (then (return (call $answer (i32.const 0)))))
    (if (i32.ne
          (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 1)))
          (i32.const 0x22))
      (then (return (call $answer (i32.const 0)))))
    ;; digits sit at offsets 1 .. len-2; walk them right to left
    (local.set $i (i32.sub (local.get $len) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $i)))
        ;; a byte below '0' wraps to a huge unsigned value, so one test covers both ends
        (local.set $digit
          (i32.sub (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 0x30)))
        (if (i32.gt_u (local.get $digit) (i32.const 9))
          (then (return (call $answer (i32.const 0)))))
        (if (local.get $double)
          (then
            (local.set $digit (i32.shl (local.get $digit) (i32.const 1)))
            (if (i32.gt_u (local.get $digit) (i32.const 9))
              (then (local.set $digit (i32.sub (local.get $digit) (i32.const 9)))))))
        (local.set $sum (i32.add (local.get $sum) (local.get $digit)))
        (local.set $double (i32.xor (local.get $double) (i32.const 1)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $next)))
    (call $answer (i32.eqz (i32.rem_u (local.get $sum) (i32.const 10))))))
