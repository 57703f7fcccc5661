"""The step profiler: ops grouped by name scope and direction, XLA thunks traced back to TensorFlow ops."""

from benchmarks import profile_step

GROUPS = profile_step.DNC_GROUPS


def test_ops_go_to_their_innermost_group_and_direction():
    classify = profile_step.classify
    assert classify("Mul", "while/body/_1/dnc/memory_access/link/mul_1", GROUPS) == ("link", "forward")
    assert classify("TopKV2", "while/body/_1/dnc/memory_access/write_weights/allocation/argsort/TopKV2", GROUPS) == (
        "allocation",
        "forward",
    )
    grad = "gradient_tape/while/while_grad/body/_498/gradient_tape/while/gradients/dnc/controller/MatMul_grad/MatMul"
    assert classify("MatMul", grad, GROUPS) == ("controller", "backward")
    assert classify("TensorListPushBack", "while/body/_1/dnc/memory_access/link/acc", GROUPS) == ("loop", "forward")
    assert classify("AssignSubVariableOp", "rms_prop/AssignSubVariableOp", GROUPS) == ("other", "update")
    assert classify("Mul", "dnc/memory_access/mul", GROUPS) == ("other", "forward")


def test_hlo_metadata_names_each_instruction():
    hlo = "\n".join(
        [
            "  %broadcast_multiply_fusion.3 = f32[16,1,256,256]{3,2,1,0} fusion(f32[16,1,256]{2,1,0} %p), "
            'kind=kLoop, calls=%f, metadata={op_type="Mul" op_name="while/dnc/memory_access/link/mul_1" '
            'source_file="x.py" source_line=3}',
            "  ROOT %dot.12 = f32[16,4]{1,0} dot(%a, %b), lhs_contracting_dims={1}, "
            'metadata={op_type="MatMul" op_name="dnc/controller/MatMul"}',
            "  %tuple.1 = (f32[]) tuple(%c)",
        ]
    )
    assert profile_step._hlo_names(hlo) == {
        "broadcast_multiply_fusion.3": ("Mul", "while/dnc/memory_access/link/mul_1"),
        "dot.12": ("MatMul", "dnc/controller/MatMul"),
    }
