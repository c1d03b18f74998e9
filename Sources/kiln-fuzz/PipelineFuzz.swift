// A libFuzzer target for the pipeline parser: any bytes must give a result (spec or
// diagnostics) without crashing, hanging or blowing up memory. Run it with `make fuzz`.
import KilnPipeline

/// One input: parse it, and plan it when it is valid.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch PipelineFile.parse(bytes) {
    case .valid(let spec):
        _ = BuildPlan.make(spec, for: .push(.branch("main")), limits: .standard)
    case .invalid(let diagnostics):
        precondition(!diagnostics.isEmpty, "an invalid file must say why")
    }
    return 0
}

#if KILN_FUZZ
    /// libFuzzer's entry point for one input.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzOne(data, size) }

    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's `main` to `<module>_main`; hand the run to libFuzzer.
    @_cdecl("kiln_fuzz_main")
    func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
    }
#else
    @main
    enum FuzzHelp {
        static func main() {
            print("kiln-fuzz is a libFuzzer target; run it with `make fuzz` (swift build -Xswiftc -sanitize=fuzzer -Xswiftc -DKILN_FUZZ).")
        }
    }
#endif
